"""``lfr-match``: run the match service until SIGTERM."""

from __future__ import annotations

from typing import cast

from lfr.common.server import ServiceParts, run_service
from lfr.common.settings import ServiceSettings
from lfr_match.server import make_parts
from lfr_match.settings import MatchSettings, load


def main() -> None:
    async def parts(settings: ServiceSettings) -> ServiceParts:
        return await make_parts(cast(MatchSettings, settings))

    run_service("match", load, parts)


if __name__ == "__main__":
    main()
