"""Every RPC of every lfr.v1 service is implemented by its servicer: none is left to the
generated base class, which answers UNIMPLEMENTED. Health, reflection and each RPC's behaviour
are tested per service in tests/service/test_<name>_grpc.py."""

from __future__ import annotations

import importlib

import pytest
from google.protobuf import descriptor_pool

from lfr.v1 import alert_pb2, ingest_pb2, match_pb2, watchlist_pb2  # noqa: F401 - registers descriptors

SERVICES = {
    "ingest": ("lfr.v1.IngestService", "lfr_ingest.servicer", "IngestServiceServicer"),
    "match": ("lfr.v1.MatchService", "lfr_match.servicer", "MatchServiceServicer"),
    "watchlist": ("lfr.v1.WatchlistService", "lfr_watchlist.servicer", "WatchlistServiceServicer"),
    "alert": ("lfr.v1.AlertService", "lfr_alert.servicer", "AlertServiceServicer"),
}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_rpc_has_an_implementation(name: str) -> None:
    full_name, module_name, class_name = SERVICES[name]
    generated = getattr(importlib.import_module(f"lfr.v1.{name}_pb2_grpc"), class_name)
    module = importlib.import_module(module_name)
    servicers = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, generated) and obj is not generated
    ]
    assert len(servicers) == 1, f"{module_name} should define one {class_name} subclass"
    servicer = servicers[0]
    rpcs = [m.name for m in descriptor_pool.Default().FindServiceByName(full_name).methods]
    assert rpcs, full_name
    left_to_the_base = [rpc for rpc in rpcs if getattr(servicer, rpc) is getattr(generated, rpc)]
    assert left_to_the_base == [], f"{full_name}: answered UNIMPLEMENTED by the generated base"
