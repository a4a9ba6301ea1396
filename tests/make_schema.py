"""`make schema`: migrate a scratch database on a throwaway embedded server and dump its schema."""

from __future__ import annotations

import asyncio

from outbound_sender.store.schema import SCHEMA_FILE, dump_schema
from tests import pg


def main() -> None:
    servers = pg.start_server()
    server = next(servers)
    try:
        asyncio.run(pg.create_template(server))
        SCHEMA_FILE.write_text(dump_schema(server.dsn(pg.TEMPLATE)))
        print(f"wrote {SCHEMA_FILE}")
    finally:
        for _ in servers:
            pass


if __name__ == "__main__":
    main()
