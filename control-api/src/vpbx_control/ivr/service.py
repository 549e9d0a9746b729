from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ..auth.principal import Principal
from ..nodeconfig.publisher import ConfigPublisher
from ..numbers.store import NumberStore
from ..paging import PageParams, check_if_match
from ..prompts.upload import MENU_PROMPT_LIMITS, convert_upload
from ..references import refuse_if_number_entry, refuse_if_referenced
from ..repository import TenantWork
from ..routeplans.graph import NodeKind, NodeRef, ProposedChange, ivr_menu_edges
from ..routeplans.service import refuse_cycles
from ..targets import Target, check_target
from .errors import (
    IvrMenuIsNumberEntry,
    IvrMenuNameTaken,
    NoAudioPrompt,
    TtsFailed,
    TtsLanguageNotSupported,
    TtsTextNotSpeakable,
    TtsUnavailable,
)
from .models import IvrMenuRow, PromptRow
from .repository import IvrMenuRepository, PromptRepository
from .schemas import (
    AudioPrompt,
    IvrMenuCreate,
    IvrMenuUpdate,
    MenuPrompt,
    Options,
    Prompt,
    SpokenPrompt,
    TtsPrompt,
)
from .speech import (
    SpeechEngine,
    SpeechFailedError,
    SpeechUnavailableError,
    UnspeakableTextError,
    UnsupportedLanguageError,
)

_TARGET_FIELDS = ("timeout_target", "invalid_target")


def _document(target: Target | None) -> dict[str, Any] | None:
    return target.model_dump(mode="json") if target is not None else None


@contextlib.contextmanager
def speech_errors(at: str = "body.prompt") -> Iterator[None]:
    """espeak-ng's problems as the API's errors (422 naming the field, or 503)."""
    try:
        yield
    except UnsupportedLanguageError as exc:
        raise TtsLanguageNotSupported(str(exc), at) from exc
    except UnspeakableTextError as exc:
        raise TtsTextNotSpeakable(str(exc), at) from exc
    except SpeechUnavailableError as exc:
        raise TtsUnavailable(str(exc), at) from exc
    except SpeechFailedError as exc:
        raise TtsFailed(str(exc), at) from exc


async def check_prompt(
    prompts: PromptRepository, speech: SpeechEngine, prompt: Prompt, at: str = "body.prompt"
) -> None:
    """Refuse a prompt that cannot be played (a foreign upload, a language without a voice)
    before any other work; ``at`` is where it is in the request body."""
    if isinstance(prompt, AudioPrompt):
        await prompts.referenced(prompt.prompt_id, f"{at}.prompt_id")
    elif isinstance(prompt, TtsPrompt):
        with speech_errors(at):
            await speech.voice(prompt.language)


async def prompt_document(
    prompts: PromptRepository,
    speech: SpeechEngine,
    prompt: Prompt,
    menu_id: uuid.UUID | None,
    at: str = "body.prompt",
) -> dict[str, Any]:
    """What is stored for a prompt. Speech is stored as audio, so the nodes just play it: the
    tenant's rendering of the same text and language when there is one, else a new one."""
    if not isinstance(prompt, TtsPrompt):
        return prompt.model_dump(mode="json")
    prompt_id = await prompts.speaking(prompt.text, prompt.language)
    if prompt_id is None:
        with speech_errors(at):
            spoken = await speech.render(prompt.text, prompt.language)
        rendered = prompts.add(
            PromptRow.converted(
                spoken.audio,
                f"text-to-speech-{spoken.voice}.wav",
                ivr_menu_id=menu_id,
                text=prompt.text,
                language=prompt.language,
            )
        )
        prompt_id = rendered.id
    return AudioPrompt(prompt_id=prompt_id).model_dump(mode="json")


class IvrMenuService:
    def __init__(
        self,
        session: AsyncSession,
        principal: Principal,
        publisher: ConfigPublisher,
        numbers: NumberStore,
        speech: SpeechEngine,
    ) -> None:
        self.session = session
        self.tenant_id = principal.tenant
        self.repository = IvrMenuRepository(session, principal.tenant)
        self.prompts = PromptRepository(session, principal.tenant)
        self.work = TenantWork(session, principal.tenant, publisher)
        self.numbers = numbers
        self.speech = speech

    async def list(self, params: PageParams, name: str | None) -> tuple[list[IvrMenuRow], int]:
        return await self.repository.page(self.repository.filtered(name), params)

    async def get(self, menu_id: uuid.UUID) -> IvrMenuRow:
        return await self.repository.get(menu_id)

    async def create(self, body: IvrMenuCreate) -> IvrMenuRow:
        if await self.repository.name_taken(body.name):
            raise IvrMenuNameTaken(body.name)
        await self._check_prompt(body.prompt)
        await self._check_options(body.options)
        for key in _TARGET_FIELDS:
            await check_target(self.session, self.tenant_id, getattr(body, key), f"body.{key}")
        menu_id = uuid.uuid4()
        options = {digit: _document(target) for digit, target in body.options.items()}
        timeout_target = _document(body.timeout_target)
        invalid_target = _document(body.invalid_target)
        await self._refuse_cycles(menu_id, body.name, options, timeout_target, invalid_target)
        # Last, as the most expensive check: a tts prompt is rendered (before anything is written).
        prompt = await self._prompt_document(body.prompt, menu_id)
        row = IvrMenuRow(
            id=menu_id,
            name=body.name,
            prompt=prompt,
            options=options,
            timeout_s=body.timeout_s,
            timeout_target=timeout_target,
            invalid_target=invalid_target,
            max_retries=body.max_retries,
            revision=1,
        )
        self.repository.add(row)
        await self.work.commit()
        return row

    async def update(
        self, menu_id: uuid.UUID, body: IvrMenuUpdate, if_match: str | None
    ) -> IvrMenuRow:
        row = await self.repository.get(menu_id)
        check_if_match(if_match, row.etag())
        renamed = body.name is not None and body.name != row.name
        if renamed and await self.repository.name_taken(str(body.name)):
            raise IvrMenuNameTaken(str(body.name))
        if body.prompt is not None:
            await self._check_prompt(body.prompt)
        changes: dict[str, Any] = {}
        if body.options is not None:
            await self._check_options(body.options)
            changes["options"] = {digit: _document(t) for digit, t in body.options.items()}
        for key in _TARGET_FIELDS:
            if key in body.model_fields_set:  # null is meaningful here: hang up
                target = getattr(body, key)
                await check_target(self.session, self.tenant_id, target, f"body.{key}")
                changes[key] = _document(target)
        if changes:
            await self._refuse_cycles(
                row.id,
                body.name or row.name,
                changes.get("options", row.options),
                changes.get("timeout_target", row.timeout_target),
                changes.get("invalid_target", row.invalid_target),
            )
        if body.prompt is not None:
            changes["prompt"] = await self._prompt_document(body.prompt, row.id)
        for key in ("name", "timeout_s", "max_retries"):
            if getattr(body, key) is not None:
                changes[key] = getattr(body, key)
        for key, value in changes.items():
            setattr(row, key, value)
        self.repository.touch(row)
        await self.prompts.prune()
        await self.work.commit()
        return row

    async def delete(self, menu_id: uuid.UUID, if_match: str | None) -> None:
        row = await self.repository.get(menu_id)
        check_if_match(if_match, row.etag())
        # referrers() leaves the menu itself out: "9: repeat" does not keep it alive.
        await refuse_if_referenced(self.session, self.tenant_id, row.id, "IVR menu")
        await refuse_if_number_entry(self.numbers, self.tenant_id, row.id, IvrMenuIsNumberEntry)
        await self.repository.delete(row)
        await self.prompts.prune()
        await self.work.commit()

    async def upload_prompt(
        self, menu_id: uuid.UUID, filename: str | None, data: bytes, if_match: str | None
    ) -> PromptRow:
        row = await self.repository.get(menu_id)
        check_if_match(if_match, row.etag())
        converted = await convert_upload(data, MENU_PROMPT_LIMITS)
        prompt = self.prompts.add(
            PromptRow.converted(converted, filename or "prompt.wav", ivr_menu_id=row.id)
        )
        row.prompt = AudioPrompt(prompt_id=prompt.id).model_dump(mode="json")
        self.repository.touch(row)
        await self.prompts.prune()
        await self.work.commit()
        return prompt

    async def prompt_audio(self, menu_id: uuid.UUID) -> PromptRow:
        row = await self.repository.get(menu_id)
        if row.prompt.get("kind") != "audio":
            raise NoAudioPrompt()
        prompt = await self.prompts.find(uuid.UUID(str(row.prompt["prompt_id"])))
        if prompt is None:
            raise NoAudioPrompt()
        return prompt

    async def spoken(self, rows: Sequence[IvrMenuRow]) -> dict[uuid.UUID, MenuPrompt]:
        """How each menu's prompt reads back, for menus playing rendered speech: as ``tts``
        with its text and language (the menu row itself stores the audio reference)."""
        prompt_ids = {
            menu.id: uuid.UUID(str(menu.prompt["prompt_id"]))
            for menu in rows
            if menu.prompt and menu.prompt.get("kind") == "audio" and menu.prompt.get("prompt_id")
        }
        texts = await self.prompts.texts(set(prompt_ids.values()))
        spoken: dict[uuid.UUID, MenuPrompt] = {}
        for menu_id, prompt_id in prompt_ids.items():
            if prompt_id in texts:
                text, language = texts[prompt_id]
                spoken[menu_id] = SpokenPrompt(text=text, language=language, prompt_id=prompt_id)
        return spoken

    async def _check_prompt(self, prompt: Prompt) -> None:
        await check_prompt(self.prompts, self.speech, prompt)

    async def _prompt_document(self, prompt: Prompt, menu_id: uuid.UUID) -> dict[str, Any]:
        return await prompt_document(self.prompts, self.speech, prompt, menu_id)

    async def _check_options(self, options: Options) -> None:
        for digit, target in options.items():
            await check_target(self.session, self.tenant_id, target, f"body.options.{digit}")

    async def _refuse_cycles(
        self,
        menu_id: uuid.UUID,
        name: str,
        options: object,
        timeout_target: object,
        invalid_target: object,
    ) -> None:
        """Refuse a change that would close a route cycle (routeplans/graph.py decides which:
        loops through a plan or group are refused, menus leading back to menus are fine)."""
        change = ProposedChange(
            node=NodeRef(NodeKind.IVR_MENU, menu_id),
            name=name,
            edges=ivr_menu_edges(options, timeout_target, invalid_target),
        )
        await refuse_cycles(self.session, self.tenant_id, change)
