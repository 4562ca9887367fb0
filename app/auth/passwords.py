"""The password policy: at least 10 characters, and none of the passwords attackers try first.

A chosen password is refused, with a message meant for the person typing it, when

* it is shorter than MIN_PASSWORD_LENGTH (app.auth.secrets);
* it is, ignoring case, look-alike digits (`p4ssw0rd`) and digits or symbols added at either end
  (`Password2024!`), one of the commonly used passwords or words of COMMON below;
* it is one character repeated, two or three characters taking turns, or one chunk written out again
  (`aaaaaaaaaa`, `abababab12`, `summersummer`);
* it is a run of neighbouring characters, on the keyboard or in the alphabet (`1234567890`, `qwertyuiop`,
  `abcdefghij`, `9876543210`);
* it contains the local part of the account's e-mail address (`alice.smith2024` for alice.smith@…).

Generated one-time passwords are random and are not checked. The list is short on purpose: it holds the
base words that lead every published list of leaked passwords, and the suffix and look-alike folding above
turns each into the thousands of variants people actually pick.
"""

from __future__ import annotations

import re

from app.auth.secrets import MIN_PASSWORD_LENGTH

# Base words and whole passwords at the top of every list of leaked passwords (lower case, no look-alikes).
COMMON = frozenset({
    "password", "passwort", "passe", "motdepasse", "contrasena", "senha", "wachtwoord", "haslo", "salasana",
    "qwerty", "qwertz", "azerty", "qwertyuiop", "asdfghjkl", "zxcvbnm", "qazwsx", "qazwsxedc", "zaqxsw",
    "zaqwsx", "wsxedc", "iloveyou", "iloveu", "loveyou", "letmein", "welcome", "welkom", "bienvenue",
    "willkommen", "admin", "administrator", "root", "superuser", "changeme", "changeit", "default",
    "secret", "private", "login", "access", "master", "monkey", "dragon", "shadow", "sunshine", "princess",
    "football", "baseball", "soccer", "hockey", "basketball", "superman", "batman", "spiderman", "starwars",
    "pokemon", "trustno", "trustnoi", "trustnol", "whatever", "freedom", "mustang", "michael", "jennifer",
    "jordan", "hunter", "ranger", "buster", "harley", "charlie", "thomas", "robert", "daniel", "jessica",
    "ashley", "summer", "winter", "spring", "autumn", "flower", "computer", "internet", "google",
    "facebook", "samsung", "apple", "microsoft", "cheese", "chocolate", "cookie", "butterfly", "purple",
    "orange", "banana", "pepper", "ginger", "hello", "hellothere", "test", "tester", "testing", "temp",
    "temporary", "guest", "user", "demo", "prefloop", "annotator", "labeler"
})
# Rows of a keyboard, and the alphabet: a password that is one stretch of one of them is a pattern.
_SEQUENCES = ("01234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm", "qwertzuiop", "yxcvbnm", "azertyuiop",
              "qsdfghjklm", "wxcvbn", "abcdefghijklmnopqrstuvwxyz", "1qaz2wsx3edc4rfv5tgb6yhn7ujm",
              "1q2w3e4r5t6y7u8i9o0p")
_LOOK_ALIKES = str.maketrans({"0": "o", "1": "i", "!": "i", "3": "e", "4": "a", "@": "a", "5": "s", "$": "s",
                              "7": "t", "+": "t", "8": "b", "9": "g"})
_EDGES = re.compile(r"^[\W\d_]+|[\W\d_]+$")
_SYMBOL_EDGES = re.compile(r"^[\W_]+|[\W_]+$")


def _base_words(password: str) -> set[str]:
    """The forms of `password` to look up in COMMON: as typed, without digits and symbols at its ends,
    and with look-alike digits read as letters."""
    lowered = password.lower()
    forms = {lowered, _EDGES.sub("", lowered), lowered.translate(_LOOK_ALIKES)}
    forms.add(_EDGES.sub("", lowered.translate(_LOOK_ALIKES)))
    forms.add(_EDGES.sub("", _EDGES.sub("", lowered).translate(_LOOK_ALIKES)))
    return {re.sub(r"[\W_]+", "", form) for form in forms}


def _is_repetitive(password: str) -> bool:
    lowered = password.lower()
    core = _EDGES.sub("", lowered)  # `abababab12`: the pattern with a number stuck on
    if len(set(lowered)) <= 3 or (len(core) >= 6 and len(set(core)) <= 3):
        return True
    return any(len(lowered) % size == 0 and lowered[:size] * (len(lowered) // size) == lowered
               for size in range(1, len(lowered) // 2 + 1))


def _is_sequence(password: str) -> bool:
    forms = {password.lower(), _SYMBOL_EDGES.sub("", password.lower())}
    return any(form and (form in row or form in row[::-1]) for form in forms for row in _SEQUENCES)


def password_problem(password: str, email: str | None = None) -> str | None:
    """Why `password` may not be chosen (a sentence for the form), or None when it follows the policy."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"password too short: at least {MIN_PASSWORD_LENGTH} characters"
    if _base_words(password) & COMMON:
        return "password is one of the most common passwords; choose one nobody would guess, such as a few unrelated words"
    if _is_repetitive(password):
        return "password repeats the same few characters; choose one nobody would guess, such as a few unrelated words"
    if _is_sequence(password):
        return "password is a run of neighbouring keys or letters; choose one nobody would guess"
    local = re.sub(r"[\W_]+", "", (email or "").split("@", 1)[0].lower())
    if len(local) >= 3 and local in re.sub(r"[\W_]+", "", password.lower()):
        return "password contains your e-mail address; choose one that does not"
    return None
