"""Prompt formats: how a conversation becomes the text a Gemma model was trained on.

* ``gemma`` (Gemma 1 and 2) and ``gemma3``: ``<start_of_turn>user\\n…<end_of_turn>\\n``
  turns, ``model`` for the model's turns. These models have no system role: a
  system instruction goes at the start of the first user turn, followed by a
  blank line, as the official Gemma guidance and templates do.
* ``gemma4``: ``<|turn>ROLE\\n…<turn|>\\n`` turns, with a real ``system`` turn.
* ``raw``: the text as it is, for pretrained models.

``<bos>`` is never added here: KerasHub's preprocessor adds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from keras_gemma_app.errors import SettingsError

TEMPLATES = ("raw", "gemma", "gemma3", "gemma4")
ROLES = ("system", "user", "model")
_ALIASES = {"assistant": "model"}

FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE = "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"


def check_template(name: str) -> str:
    """Validates a template name."""
    if name not in TEMPLATES:
        raise SettingsError(f"Unknown template {name!r}: expected one of {', '.join(TEMPLATES)}.")
    return name


def normalize(messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """Checks a conversation and returns it as plain ``{"role", "content"}`` dicts.

    Rules: an optional system message first, then user and model turns
    alternating, starting with user. "assistant" is accepted for "model".

    Raises:
        SettingsError: an unknown role, a misplaced system message, or turns
            that do not alternate.
    """
    result = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise SettingsError(f"Message {index} must be a mapping with 'role' and 'content', received {message!r}.")
        role = _ALIASES.get(message["role"], message["role"])
        if role not in ROLES:
            raise SettingsError(f"Unknown role {message['role']!r} in message {index}: expected one of {', '.join(ROLES)}.")
        if not isinstance(message["content"], str):
            raise SettingsError(f"Message {index} content must be text, received {type(message['content']).__name__}.")
        result.append({"role": role, "content": message["content"]})
    turns = result[1:] if result and result[0]["role"] == "system" else result
    for index, message in enumerate(turns):
        expected = "user" if index % 2 == 0 else "model"
        if message["role"] != expected:
            raise SettingsError(
                f"Turns must alternate user/model starting with user: turn {index + 1} is "
                f"{message['role']!r}, expected {expected!r}."
            )
    return result


def _split_system(messages: list[dict[str, str]]) -> tuple[str | None, list[dict[str, str]]]:
    if messages and messages[0]["role"] == "system":
        return messages[0]["content"], messages[1:]
    return None, messages


def render(messages: Sequence[Mapping[str, str]], template: str, *, add_generation_prompt: bool = True) -> str:
    """Renders a conversation in ``template``, ready for the tokenizer.

    Args:
        messages: ``{"role": "system"|"user"|"model", "content": …}`` dicts.
        template: one of :data:`TEMPLATES`.
        add_generation_prompt: end with the opening of the model's turn.

    Example:
        >>> render([{"role": "user", "content": "Hi"}], "gemma3")
        '<start_of_turn>user\\nHi<end_of_turn>\\n<start_of_turn>model\\n'
    """
    check_template(template)
    messages = normalize(messages)
    system, turns = _split_system(messages)
    if template == "raw":
        parts = [m["content"] for m in turns]
        if system:
            parts.insert(0, system)
        return "\n\n".join(parts)
    if template == "gemma4":
        out = [f"<|turn>{m['role']}\n{m['content'].strip()}<turn|>\n" for m in messages]
        if add_generation_prompt:
            out.append("<|turn>model\n")
        return "".join(out)
    out = []
    for index, message in enumerate(turns):
        content = message["content"].strip()
        if index == 0 and system:
            content = f"{system.strip()}\n\n{content}"
        out.append(f"<start_of_turn>{message['role']}\n{content}<end_of_turn>\n")
    if add_generation_prompt:
        out.append("<start_of_turn>model\n")
    return "".join(out)


def render_prompt(prompt: str, template: str, *, system: str | None = None) -> str:
    """Renders one user prompt (and an optional system instruction) in ``template``."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return render(messages, template)


def fim_prompt(prefix: str, suffix: str) -> str:
    """CodeGemma fill-in-the-middle: the model writes what goes between ``prefix`` and ``suffix``."""
    return f"{FIM_PREFIX}{prefix}{FIM_SUFFIX}{suffix}{FIM_MIDDLE}"


def build_prompt(prompt: str | None, template: str, *, system: str | None = None, raw: bool = False,
                 fim_prefix: str | None = None, fim_suffix: str | None = None) -> str:
    """The exact text sent to the tokenizer for one request.

    Args:
        prompt: the user's text (None with fill-in-the-middle).
        template: the model's prompt format (see :data:`TEMPLATES`).
        system: an optional system instruction.
        raw: send ``prompt`` as it is, whatever the template.
        fim_prefix, fim_suffix: build a CodeGemma fill-in-the-middle prompt instead.
    """
    if fim_prefix is not None or fim_suffix is not None:
        if prompt:
            raise SettingsError("Expected either a prompt or --fim-prefix/--fim-suffix, received both.")
        return fim_prompt(fim_prefix or "", fim_suffix or "")
    if prompt is None or not prompt.strip():
        raise SettingsError("Expected a non-empty prompt, received an empty one.")
    if raw and not system:
        return prompt
    return render_prompt(prompt, "raw" if raw else template, system=system)
