"""The platform's spoken phrases: a fixed vocabulary, rendered by the control API.

Queue announcements ("you are number 3; the expected waiting time is 4 minutes")
are put together by the media node from short clips. Each clip is one phrase of
this vocabulary in one language; the control API renders it with espeak-ng once
and serves it (``GET /internal/v1/speech/<language>/<phrase>``); the node caches
it per codec. Russian minutes are whole phrases ("одна минута", "две минуты",
"пять минут"): the number agrees with the noun in gender and the noun with the
number in case, which no concatenation of a bare number and one noun form gets
right.
"""

from __future__ import annotations

from typing import Final

LANGUAGES: Final = ("ru", "en")
DEFAULT_LANGUAGE: Final = "ru"
MAX_NUMBER: Final = 99  # numbers spoken: 1..MAX_NUMBER

YOU_ARE_NUMBER: Final = "you-are-number"
EXPECTED_WAIT: Final = "expected-wait"
LESS_THAN_A_MINUTE: Final = "less-than-a-minute"
PLEASE_HOLD: Final = "please-hold"
VOICEMAIL_GREETING: Final = "voicemail-greeting"  # a box without its own greeting
CONFERENCE_PIN: Final = "conference-pin"  # a room with a PIN asks for it
CONFERENCE_WRONG_PIN: Final = "conference-wrong-pin"
CONFERENCE_FULL: Final = "conference-full"  # the room has no free place
CALLBACK_OFFER: Final = "callback-offer"  # followed by the key to press
CALLBACK_BOOKED: Final = "callback-booked"  # said before the node hangs up
KEY_STAR: Final = "key-star"
KEY_HASH: Final = "key-hash"

_FIXED: Final[dict[str, dict[str, str]]] = {
    "ru": {
        YOU_ARE_NUMBER: "Ваш номер в очереди",
        EXPECTED_WAIT: "Ожидаемое время ожидания",
        LESS_THAN_A_MINUTE: "менее минуты",
        PLEASE_HOLD: "Пожалуйста, оставайтесь на линии.",
        VOICEMAIL_GREETING: "Абонент не может ответить. Оставьте сообщение после сигнала.",
        CONFERENCE_PIN: "Введите пин-код конференции и нажмите решётку.",
        CONFERENCE_WRONG_PIN: "Неверный пин-код.",
        CONFERENCE_FULL: "Конференция заполнена. Попробуйте позже.",
        CALLBACK_OFFER: "Чтобы мы перезвонили вам, сохранив вашу очередь, нажмите",
        CALLBACK_BOOKED: (
            "Спасибо. Мы перезвоним вам, как только подойдёт ваша очередь. Можно положить трубку."
        ),
        KEY_STAR: "звёздочку",
        KEY_HASH: "решётку",
    },
    "en": {
        YOU_ARE_NUMBER: "You are number",
        EXPECTED_WAIT: "The expected waiting time is",
        LESS_THAN_A_MINUTE: "less than a minute",
        PLEASE_HOLD: "Please stay on the line.",
        VOICEMAIL_GREETING: (
            "The person you are calling cannot answer. Please leave a message after the tone."
        ),
        CONFERENCE_PIN: "Please enter the conference PIN, then the hash key.",
        CONFERENCE_WRONG_PIN: "That PIN is not correct.",
        CONFERENCE_FULL: "The conference is full. Please try again later.",
        CALLBACK_OFFER: "To be called back without losing your place, press",
        CALLBACK_BOOKED: (
            "Thank you. We will call you back when your turn comes. You may hang up now."
        ),
        KEY_STAR: "star",
        KEY_HASH: "hash",
    },
}

_RU_UNITS_FEMININE: Final = {1: "одна", 2: "две"}
_RU_TENS: Final = {
    2: "двадцать",
    3: "тридцать",
    4: "сорок",
    5: "пятьдесят",
    6: "шестьдесят",
    7: "семьдесят",
    8: "восемьдесят",
    9: "девяносто",
}


def language_of(tag: str | None) -> str:
    """The vocabulary's language for a BCP 47 tag (``ru-RU`` -> ru); others: Russian."""
    primary = (tag or "").split("-", 1)[0].lower()
    return primary if primary in LANGUAGES else DEFAULT_LANGUAGE


def minutes_phrase(minutes: int) -> str:
    return f"minutes-{minutes}"


def _ru_minutes(n: int) -> str:
    last, tens = n % 10, n // 10
    if tens != 1 and last in _RU_UNITS_FEMININE:
        # espeak says "1" as masculine "один": write the feminine unit out in words.
        number = (
            _RU_UNITS_FEMININE[last]
            if tens == 0
            else f"{_RU_TENS[tens]} {_RU_UNITS_FEMININE[last]}"
        )
    else:
        number = str(n)
    if tens != 1 and last == 1:
        noun = "минута"
    elif tens != 1 and last in (2, 3, 4):
        noun = "минуты"
    else:
        noun = "минут"
    return f"{number} {noun}"


def phrase_text(language: str, phrase: str) -> str | None:
    """What to say for ``phrase`` in ``language`` (ru, en); None: not in the vocabulary."""
    fixed = _FIXED.get(language)
    if fixed is None:
        return None
    if phrase in fixed:
        return fixed[phrase]
    if phrase.isdigit() and phrase == str(int(phrase)) and 0 <= int(phrase) <= MAX_NUMBER:
        return phrase  # espeak-ng reads numbers out in the voice's language
    kind, _, count = phrase.partition("-")
    if kind == "minutes" and count.isdigit() and count == str(int(count)):
        n = int(count)
        if 1 <= n <= MAX_NUMBER:
            if language == "ru":
                return _ru_minutes(n)
            return f"{n} minute" if n == 1 else f"{n} minutes"
    return None


def key_phrase(key: str) -> str:
    """How to say a phone key: its digit, or star and hash by name."""
    return {"*": KEY_STAR, "#": KEY_HASH}.get(key, key)


def announcement(
    position: int | None, wait_minutes: int, callback_key: str | None = None
) -> tuple[str, ...]:
    """The phrases of a queue announcement, in order: the caller's place and wait
    (``position`` None: not said), then the callback offer when the queue makes one."""
    phrases: tuple[str, ...] = ()
    if position is not None:
        wait = minutes_phrase(wait_minutes) if wait_minutes > 0 else LESS_THAN_A_MINUTE
        phrases = (YOU_ARE_NUMBER, str(position), EXPECTED_WAIT, wait)
    if callback_key is not None:
        phrases += (CALLBACK_OFFER, key_phrase(callback_key))
    return (*phrases, PLEASE_HOLD)
