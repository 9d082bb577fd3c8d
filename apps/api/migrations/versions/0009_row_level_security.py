"""Row-level security on every table that holds an organization's data (PostgreSQL).

Migration 0003 guarded collection_schedules only; this guards organizations, memberships,
invitations, presets, runs and their results, schedules and the fire log. Requests act as
a user (`app.user_id`) and, once the request has picked it, in an organization
(`app.org_id`), both set per transaction by app.core.database. A row is visible to:

- the system (`app.system`, the scheduler): every row;
- a user acting in an organization they belong to: that organization's rows, and no
  other's, even their own other organizations' (schedules, the fire log, invitations and
  membership changes: admins only);
- a user not acting in an organization yet (provisioning, /me, creating an organization):
  their own memberships, the organizations they belong to and the invitations sent to
  their email; they may create an organization, make themselves its first admin, and
  turn an invitation to their email into a membership of the invited role.

Whether the user really is a member of the acting organization (and their role there) is
looked up once per statement by `app_acting_role()`, a SECURITY DEFINER function so that
the memberships policy can use it without recursing into itself. Results of runs
(run_categories, run_products, run_listings, run_sellers) are visible with their run: the
policy looks for the run among the acting organization's runs (through the runs' own
policy), which PostgreSQL does once per statement by index. Measured on a run of 5,000
listings among 20,000 runs (bench/row_level_security.py): under a millisecond more for a
page of results, about 4 ms (10%) more for the seller ranking over all 5,000 listings;
looking the run up among all runs instead (without `r.org_id = ...`) scanned every run,
6-8 ms more on every query, growing with the number of runs.

Work without an actor (migrations, the run executor, the cleanup worker) keeps the
connecting role, which owns the tables and is not subject to these policies.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The actor, as app.core.database sets it per transaction. In policies each is an uncorrelated
# sub-select: evaluated once per statement (an InitPlan), not once per row, and usable as
# an index condition (org_id = $1).
USER_SETTING = "NULLIF(current_setting('app.user_id', true), '')::uuid"
ORG_SETTING = "NULLIF(current_setting('app.org_id', true), '')::uuid"
USER = f"(SELECT {USER_SETTING})"
ORG = f"(SELECT {ORG_SETTING})"
SYSTEM = "(SELECT current_setting('app.system', true) = 'on')"
ACTING_MEMBER = "(SELECT app_acting_role()) IS NOT NULL"
ACTING_ADMIN = "(SELECT app_acting_role()) = 'admin'"
MY_EMAIL = f"(SELECT u.email FROM users u WHERE u.id = {USER})"


def _in_org(column: str, condition: str) -> str:
    return f"{SYSTEM} OR ({column} = {ORG} AND {condition})"


MEMBERS = _in_org("org_id", ACTING_MEMBER)
ADMINS = _in_org("org_id", ACTING_ADMIN)


def _with_run(table: str) -> str:
    # `r.org_id = ORG` is redundant with the runs' own policy (which applies inside), but
    # lets the planner read just the acting organization's runs by index, once per
    # statement (a hashed SubPlan), instead of every run of every organization.
    return (
        f"{SYSTEM} OR EXISTS (SELECT 1 FROM collection_runs r "
        f"WHERE r.id = {table}.run_id AND r.org_id = {ORG})"
    )


FUNCTIONS = [
    f"""
    CREATE FUNCTION app_acting_role() RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
        SELECT m.role FROM memberships m
        WHERE m.org_id = {ORG_SETTING} AND m.user_id = {USER_SETTING}
    $$
    """,
    f"""
    CREATE FUNCTION app_may_join(target_org uuid, wanted_role text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
        SELECT CASE
            WHEN NOT EXISTS (SELECT 1 FROM memberships m WHERE m.org_id = target_org)
                THEN wanted_role = 'admin'
            ELSE EXISTS (
                SELECT 1 FROM invitations i JOIN users u ON u.email = i.email
                WHERE i.org_id = target_org AND u.id = {USER_SETTING} AND i.role = wanted_role
            )
        END
    $$
    """,
]
# The policies call them as collection_app; nobody else needs to (they run as their owner).
GRANTS = [
    statement
    for function in ("app_acting_role()", "app_may_join(uuid, text)")
    for statement in (
        f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC",
        f"GRANT EXECUTE ON FUNCTION {function} TO collection_app",
    )
]
COMMENTS = [
    """
    COMMENT ON FUNCTION app_acting_role() IS
        'Role of the acting user (app.user_id) in the acting organization (app.org_id), '
        'NULL unless a member. Row-level security policies call it.'
    """,
    """
    COMMENT ON FUNCTION app_may_join(uuid, text) IS
        'Whether the acting user may make themselves a member of target_org with wanted_role: '
        'as the first admin of a new organization, or by an invitation to their email.'
    """,
]

# (table, policy name, command, USING, WITH CHECK); WITH CHECK defaults to USING
POLICIES: list[tuple[str, str, str, str | None, str | None]] = [
    (
        "organizations",
        "organizations_read",
        "SELECT",
        f"{_in_org('id', ACTING_MEMBER)} OR ({ORG} IS NULL AND EXISTS ("
        f"SELECT 1 FROM memberships m WHERE m.org_id = organizations.id AND m.user_id = {USER}))",
        None,
    ),
    (
        "organizations",
        "organizations_create",
        "INSERT",
        None,
        f"{SYSTEM} OR ({USER} IS NOT NULL AND {ORG} IS NULL)",
    ),
    ("organizations", "organizations_change", "UPDATE", _in_org("id", ACTING_ADMIN), None),
    ("organizations", "organizations_delete", "DELETE", SYSTEM, None),
    (
        "memberships",
        "memberships_read",
        "SELECT",
        f"{MEMBERS} OR ({ORG} IS NULL AND user_id = {USER})",
        None,
    ),
    (
        "memberships",
        "memberships_join",
        "INSERT",
        None,
        f"{ADMINS} OR ({ORG} IS NULL AND user_id = {USER} AND app_may_join(org_id, role))",
    ),
    ("memberships", "memberships_change", "UPDATE", ADMINS, None),
    ("memberships", "memberships_delete", "DELETE", ADMINS, None),
    (
        "invitations",
        "invitations_read",
        "SELECT",
        f"{ADMINS} OR ({ORG} IS NULL AND email = {MY_EMAIL})",
        None,
    ),
    ("invitations", "invitations_create", "INSERT", None, ADMINS),
    ("invitations", "invitations_change", "UPDATE", ADMINS, None),
    (
        "invitations",
        "invitations_delete",
        "DELETE",
        f"{ADMINS} OR ({ORG} IS NULL AND email = {MY_EMAIL})",
        None,
    ),
    ("amazon_category_presets", "amazon_category_presets_members", "ALL", MEMBERS, None),
    ("collection_runs", "collection_runs_members", "ALL", MEMBERS, None),
    ("run_categories", "run_categories_with_run", "ALL", _with_run("run_categories"), None),
    ("run_products", "run_products_with_run", "ALL", _with_run("run_products"), None),
    ("run_listings", "run_listings_with_run", "ALL", _with_run("run_listings"), None),
    ("run_sellers", "run_sellers_with_run", "ALL", _with_run("run_sellers"), None),
    ("collection_schedules", "collection_schedules_admins", "ALL", ADMINS, None),
    ("collection_schedule_fires", "collection_schedule_fires_admins", "ALL", ADMINS, None),
]
TABLES = list(dict.fromkeys(table for table, *_ in POLICIES))

# Migration 0003's policy on collection_schedules (admins of the row's organization, by a
# membership lookup per row), replaced by the stricter one above and restored on downgrade.
OLD_SCHEDULE_POLICY = """
    CREATE POLICY collection_schedules_admins ON collection_schedules
        USING (
            current_setting('app.system', true) = 'on'
            OR EXISTS (
                SELECT 1 FROM memberships m
                WHERE m.org_id = collection_schedules.org_id
                  AND m.user_id = NULLIF(current_setting('app.user_id', true), '')::uuid
                  AND m.role = 'admin'
            )
        )
"""


def _create_policy(
    table: str, name: str, command: str, using: str | None, check: str | None
) -> str:
    statement = f"CREATE POLICY {name} ON {table} FOR {command}"
    if using is not None:
        statement += f" USING ({using})"
    if check is not None:
        statement += f" WITH CHECK ({check})"
    return statement


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP POLICY IF EXISTS collection_schedules_admins ON collection_schedules")
    for statement in FUNCTIONS + GRANTS + COMMENTS:
        op.execute(statement)
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    for policy in POLICIES:
        op.execute(_create_policy(*policy))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, name, *_ in POLICIES:
        op.execute(f"DROP POLICY IF EXISTS {name} ON {table}")
    for table in TABLES:
        if table != "collection_schedules":
            op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute(OLD_SCHEDULE_POLICY)
    op.execute("DROP FUNCTION IF EXISTS app_may_join(uuid, text)")
    op.execute("DROP FUNCTION IF EXISTS app_acting_role()")
