"""The synthetic stream harness: face photos → synthetic camera streams with ground truth →
driven through a running lfr suite → identification rate, false alerts, latency, throughput.

Modules: :mod:`.photos` (who and where the face is), :mod:`.scene` (plans and pixels),
:mod:`.truth` (ground truth, alert association), :mod:`.driver` (the gRPC run),
:mod:`.record` / :mod:`.report` / :mod:`.plot` (figures), :mod:`.video` (files for the pull
path), :mod:`.harness` (putting a run together), :mod:`.suite` (which suite), :mod:`.cli`.
"""
