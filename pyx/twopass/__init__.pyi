from contextlib import AbstractContextManager
from typing import Any, Literal, Sequence, SupportsIndex, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

__version__: str
LEVELS: tuple[str, ...]
ALGORITHMS: tuple[str, ...]

Level = Literal["python", "avx2", "avx512f"]
Algorithm = Literal["auto", "two_pass", "three_pass_reload", "three_pass_recompute"]
Axis = SupportsIndex | Sequence[SupportsIndex] | None

@overload
def softmax(x: ArrayLike, axis: Axis = ..., *, out: None = ..., algorithm: Algorithm = ...) -> Any: ...
@overload
def softmax(x: ArrayLike, axis: Axis = ..., *, out: NDArray[Any], algorithm: Algorithm = ...) -> NDArray[Any]: ...
def runtime_info() -> dict[str, Any]: ...
def show_runtime() -> None: ...
def use_isa(level: Level) -> AbstractContextManager[Level]: ...
def available_levels() -> tuple[str, ...]: ...
