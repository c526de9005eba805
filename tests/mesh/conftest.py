from collections.abc import Iterator

import pytest

from tests.mesh.harness import Bench


@pytest.fixture
def bench() -> Iterator[Bench]:
    b = Bench()
    yield b
    b.store.close()
