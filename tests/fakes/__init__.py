"""Fakes of the systems around lcx, served for real (loopback sockets), for tests."""
