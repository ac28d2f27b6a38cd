"""``lfr-alert``: run the alert service until SIGTERM."""

from __future__ import annotations

from typing import cast

from lfr.common.server import ServiceParts, run_service
from lfr.common.settings import ServiceSettings
from lfr_alert.server import make_parts
from lfr_alert.settings import AlertSettings, load


def main() -> None:
    async def parts(settings: ServiceSettings) -> ServiceParts:
        return await make_parts(cast(AlertSettings, settings))

    run_service("alert", load, parts)


if __name__ == "__main__":
    main()
