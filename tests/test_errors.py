"""The exception hierarchy: one root, builtin mix-ins, layer attribution."""

from __future__ import annotations

import pytest

from venvstacks import errors
from venvstacks.errors import (
    BuildError,
    DeployError,
    GraphError,
    LayerError,
    LockError,
    PublishError,
    RuntimeProvisionError,
    SelectionError,
    SpecError,
    StackError,
)

# class -> the builtin it also is
HIERARCHY: list[tuple[type[Exception], type[Exception]]] = [
    (SpecError, ValueError),
    (GraphError, ValueError),
    (SelectionError, ValueError),
    (LayerError, Exception),
    (RuntimeProvisionError, RuntimeError),
    (LockError, RuntimeError),
    (BuildError, RuntimeError),
    (PublishError, RuntimeError),
    (DeployError, RuntimeError),
]


def test_every_exported_error_is_in_the_table() -> None:
    exported = {name for name in errors.__all__ if name != "StackError"}
    assert exported == {cls.__name__ for cls, _ in HIERARCHY}


@pytest.mark.parametrize(("cls", "builtin"), HIERARCHY)
def test_every_error_is_a_stack_error_and_its_builtin(
    cls: type[Exception], builtin: type[Exception]
) -> None:
    assert issubclass(cls, StackError)
    assert issubclass(cls, builtin)


@pytest.mark.parametrize(
    "cls", [LayerError, RuntimeProvisionError, LockError, BuildError, PublishError]
)
def test_layer_errors_name_their_layer(cls: type[LayerError]) -> None:
    error = cls("app-x", "it failed")
    assert str(error) == "layer app-x: it failed"
    assert error.layer == "app-x"
    assert error.detail == "it failed"
    assert isinstance(error, LayerError)


def test_layer_error_without_a_layer_is_the_plain_message() -> None:
    error = LockError(None, "no layer here")
    assert str(error) == "no layer here"
    assert error.layer is None


def test_layer_error_can_be_caught_as_runtime_error() -> None:
    with pytest.raises(RuntimeError, match=r"^layer cpython-3\.11: gone$"):
        raise RuntimeProvisionError("cpython-3.11", "gone")


@pytest.mark.parametrize(
    ("problems", "message"),
    [
        (["unknown key 'x'"], "spec.toml: unknown key 'x'"),
        (["a", "b", "c"], "spec.toml: 3 problems: a; b; c"),
    ],
)
def test_spec_error_lists_every_problem(problems: list[str], message: str) -> None:
    error = SpecError("spec.toml", problems)
    assert str(error) == message
    assert error.source == "spec.toml"
    assert error.problems == tuple(problems)


def test_plain_errors_keep_their_message() -> None:
    assert str(GraphError("no layer matches 'x'")) == "no layer matches 'x'"
    assert str(DeployError("bad archive")) == "bad archive"
    assert str(StackError("root")) == "root"
