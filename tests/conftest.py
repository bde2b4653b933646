"""Test-suite wide settings; area fixtures live in each area's conftest."""
