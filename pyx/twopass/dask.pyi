from typing import Literal, Sequence, SupportsIndex, overload

import dask.array as da
from numpy.typing import ArrayLike

Axis = SupportsIndex | Sequence[SupportsIndex] | None
SplitEvery = int | dict[int, int] | None

def softmax(x: da.Array | ArrayLike, axis: Axis = ..., *, split_every: SplitEvery = ...) -> da.Array: ...
def log_softmax(x: da.Array | ArrayLike, axis: Axis = ..., *, split_every: SplitEvery = ...) -> da.Array: ...
@overload
def logsumexp(a: da.Array | ArrayLike, axis: Axis = ..., b: None = ..., keepdims: bool = ...,
              return_sign: Literal[False] = ..., *, split_every: SplitEvery = ...) -> da.Array: ...
@overload
def logsumexp(a: da.Array | ArrayLike, axis: Axis = ..., b: None = ..., keepdims: bool = ...,
              *, return_sign: Literal[True], split_every: SplitEvery = ...) -> tuple[da.Array, da.Array]: ...
@overload
def logsumexp(a: da.Array | ArrayLike, axis: Axis, b: None, keepdims: bool, return_sign: Literal[True],
              *, split_every: SplitEvery = ...) -> tuple[da.Array, da.Array]: ...
