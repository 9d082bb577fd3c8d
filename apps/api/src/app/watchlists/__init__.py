"""Watchlists and digests: the sellers an organization watches, each member's digest
preferences, the digest of a run (what changed that a member wants to hear about), and the
digest mails after scheduled runs."""
