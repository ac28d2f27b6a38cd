"""``lfr-watchlist``: run the watchlist service until SIGTERM."""

from __future__ import annotations

from typing import cast

from lfr.common.server import ServiceParts, run_service
from lfr.common.settings import ServiceSettings
from lfr_watchlist.server import make_parts
from lfr_watchlist.settings import WatchlistSettings, load


def main() -> None:
    async def parts(settings: ServiceSettings) -> ServiceParts:
        return await make_parts(cast(WatchlistSettings, settings))

    run_service("watchlist", load, parts)


if __name__ == "__main__":
    main()
