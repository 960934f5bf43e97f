# SPDX-License-Identifier: Apache-2.0
"""The unit tests, a package so that mypy can check them in one run with the integration tests.

Both directories hold a conftest.py; as two top-level modules they would both be named
`conftest`, which mypy refuses ("Duplicate module named"). As a package the unit side's modules
are `unit.*` (pytest puts tests/ on sys.path), and they import each other relatively.
"""
