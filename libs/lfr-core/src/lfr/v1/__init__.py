"""Generated gRPC contracts (package lfr.v1). Produced by `make proto`; never edit by hand."""
