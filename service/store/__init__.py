"""covreq's database: SQLAlchemy 2 tables and Alembic migrations, shared by every worker and replica.

SQLite in a data folder is the embedded default, PostgreSQL the choice for a fleet
(``COVREQ_DATABASE_URL``; docs/operations.md, "The database"). ``engine`` opens it, ``models`` names
its tables, ``migrate`` brings its schema to the newest migration at start, ``replay`` keeps the
single-use JWT ids in it, ``database`` opens what a service's settings ask for.
"""
