"""Helpers shared by the test areas: real lcx processes, fake servers, clients."""
