"""``lfr-ingest``: run the ingest service until SIGTERM."""

from __future__ import annotations

from typing import cast

from lfr.common.server import run_service
from lfr.common.settings import ServiceSettings
from lfr_ingest.server import make_parts
from lfr_ingest.settings import IngestSettings, load


def main() -> None:
    async def parts(settings: ServiceSettings):  # type: ignore[no-untyped-def]
        return await make_parts(cast(IngestSettings, settings))

    run_service("ingest", load, parts)


if __name__ == "__main__":
    main()
