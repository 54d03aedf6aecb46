"""Shared fixtures for the allocator tests: one reference solver for the whole session.

ReferenceAllocator compiles one cvxpy program per size bucket; sharing it keeps the compile cost to one
per bucket over all suites. Its tolerance is tightened from the default 1e-10 to 1e-12: with tau near
1e-3 and tied values the default leaves weight errors up to about 2e-5, above the 1e-6 the agreement
test asks for (the fast solver's answer has the better objective in every such case; see test_agreement).
"""

from __future__ import annotations

import pytest

from fairness.allocator.reference import ReferenceAllocator

REFERENCE_TOLERANCE = 1e-12


@pytest.fixture(scope="session")
def reference() -> ReferenceAllocator:
    return ReferenceAllocator(tolerance=REFERENCE_TOLERANCE)
