"""The PostgreSQL side: schema and migrations, the idempotent sink, partition maintenance.

`soundscape db upgrade|downgrade|status|maintain`, `soundscape sink`, `soundscape bench sink`.
"""
