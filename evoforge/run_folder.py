"""The names of the files a run folder holds, in one place: the record, the run it works on, the run lock. Constants
only (no imports), so the jailed supervisor may import it as cheaply as the record and the CLI do."""

RECORD_FILE = "record.db"  # the Database of Record (evoforge.memory.record)
RECORD_URL_FILE = "record.url"  # instead of record.db: the SQLAlchemy URL of a record kept elsewhere (PostgreSQL)
LOCK_FILE = "run.lock"  # held while a run or resume writes the record (evoforge.run_lock)
RUN_FILE = "run.json"  # which run of the record the folder works on ({"run_id": N, "runner": NAME}); see --join
