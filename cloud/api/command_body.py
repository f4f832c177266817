"""The body of ``POST /devices/{id}/commands``: one model per command of the capability
vocabulary, told apart by capability and command, so that ``/docs`` shows every command's
arguments with their types and bounds.

Clients send the same JSON as ever: ``{"capability": ..., "command": ..., "args": {...}}``. A
capability or command outside the vocabulary is taken as it is and refused by the command
service with a message naming what exists (the schema does not list that catch-all).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    Tag,
    create_model,
)
from pydantic.json_schema import SkipJsonSchema

from wire.capabilities import CAPABILITIES, Args, CapabilitySpec, CommandSpec, split_instance

_OUTSIDE = "outside-vocabulary"


class CommandOutsideVocabulary(BaseModel):
    """A command the vocabulary does not have: the service answers 422 with what exists."""

    model_config = ConfigDict(extra="forbid")

    capability: str = Field(min_length=1, max_length=64)
    command: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)

    def arguments(self) -> dict[str, Any]:
        return self.args


class _VocabularyCommand(BaseModel):
    """Base of the generated command models."""

    model_config = ConfigDict(extra="forbid")

    capability: str
    command: str
    args: Args

    def arguments(self) -> dict[str, Any]:
        return self.args.model_dump()


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _has_required(args: type[Args]) -> bool:
    return any(f.is_required() for f in args.model_fields.values())


def _variant(spec: CapabilitySpec, cmd: CommandSpec) -> type[_VocabularyCommand]:
    args_field = Field() if _has_required(cmd.args) else Field(default_factory=cmd.args)
    return create_model(
        f"{_camel(spec.name)}{_camel(cmd.name)}Command",
        __base__=_VocabularyCommand,
        __doc__=f"`{cmd.name}` on a `{spec.name}` capability"
                + (f" ({spec.description})" if spec.description else ""),
        capability=(str, Field(pattern=rf"^{spec.name}(@[0-9]+)?$", examples=[spec.name],
                               description=f"`{spec.name}`, or `{spec.name}@<endpoint>` for "
                                           "another endpoint's instance")),
        command=(Literal[cmd.name], Field()),  # type: ignore[arg-type,valid-type]
        args=(cmd.args, args_field),
    )


_VARIANTS: dict[str, type[_VocabularyCommand]] = {
    f"{spec.name}.{cmd.name}": _variant(spec, cmd)
    for spec in CAPABILITIES.values() for cmd in spec.commands
}


def _tag(body: Any) -> str:
    """Which model reads a body: its capability (without ``@endpoint``) and command."""
    if isinstance(body, dict):
        capability, command = body.get("capability"), body.get("command")
    else:
        capability, command = getattr(body, "capability", None), getattr(body, "command", None)
    if isinstance(capability, str) and isinstance(command, str):
        tag = f"{split_instance(capability)[0]}.{command}"
        if tag in _VARIANTS:
            return tag
    return _OUTSIDE


_CHOICES = (*(Annotated[model, Tag(tag)] for tag, model in _VARIANTS.items()),
            Annotated[SkipJsonSchema[CommandOutsideVocabulary], Tag(_OUTSIDE)])


if TYPE_CHECKING:
    _Body = _VocabularyCommand | CommandOutsideVocabulary
else:
    _Body = Annotated[Union[_CHOICES], Discriminator(_tag)]  # noqa: UP007  (built at run time)


class CommandCreate(RootModel[_Body]):
    """A command to one device: the capability (instance), the command and its arguments."""

    def arguments(self) -> dict[str, Any]:
        return self.root.arguments()

    @property
    def capability(self) -> str:
        return self.root.capability

    @property
    def command(self) -> str:
        return self.root.command
