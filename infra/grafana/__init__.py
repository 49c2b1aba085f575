"""Grafana for Soundscape: provisioning files and dashboards (defined in
dashboard_model.py), `soundscape grafana push` through Grafana's HTTP API, and
`soundscape report`, which renders the main panels' queries as PNG plots for people
without a Grafana."""
