"""Shared plumbing: settings, logging, errors, server bootstrap, clients."""
