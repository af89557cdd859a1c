"""Test support: real processes, real peers, real speech."""
