"""``/api/v1/commands``: a command's status and result, also after its REST call timed out."""

from __future__ import annotations

from fastapi import APIRouter

from cloud.api.deps import READ, CommandsDep, OwnedCommand
from cloud.api.responses import not_found
from cloud.api.schemas import CommandPublic

router = APIRouter(prefix="/commands", tags=["commands"])


@router.get("/{command_id}", dependencies=[READ], responses=not_found("command"))
async def get_command(command_id: OwnedCommand, commands: CommandsDep) -> CommandPublic:
    return CommandPublic.of(await commands.get(command_id))
