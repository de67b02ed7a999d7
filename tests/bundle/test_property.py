"""Random valid schemas compile, type-check and round-trip through the real convex export.

Bounded: a few hypothesis examples, each a batch of schemas checked with one tsc and one
Node process (starting the toolchain per schema would dominate the run time).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from engine.bundle.compiler import compile_bundle
from engine.check.deep import CheckItem, check_bundles
from engine.config import EngineConfig

from .strategies import schemas

pytestmark = [pytest.mark.toolchain, pytest.mark.slow]

BATCH = 5


# no shrinking: each example runs tsc and Node; the failing batch is printed as drawn
@settings(
    max_examples=3,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(batch=st.lists(schemas(), min_size=BATCH, max_size=BATCH))
def test_random_schemas_round_trip_through_the_real_export(toolchain, batch) -> None:
    config = EngineConfig()
    items = [
        CheckItem(
            label=f"random_{i}",
            file=f"random_{i}",
            schema=schema,
            bundle=compile_bundle(schema, version_id=f"random_{i}", config=config),
        )
        for i, schema in enumerate(batch)
    ]
    problems = check_bundles(items, toolchain)
    assert not problems, "\n".join(p.render() for p in problems)
