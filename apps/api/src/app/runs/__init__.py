"""Collection runs: their lifecycle, leases, the pipeline that executes them, results and
notifications, and the commands the API and the web pages share."""
