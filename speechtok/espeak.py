"""espeak-ng's IPA through the library the ``espeakng-loader`` wheel ships.

Why the wheel and not the ``espeak-ng`` program: a model that reads phonemes needs them at
inference too, so they must come with ``pip install`` (no system package), and from one espeak-ng
version in training and use alike (the Debian 1.51 program and the wheel's 1.52 differ on some sentences,
e.g. ``oː`` / ``ɔː`` before ``ɹ``).
"""
from __future__ import annotations

import ctypes
import functools
import threading

from .errors import DataError

INSTALL_HINT = "pip install espeakng-loader"
_VOICE = b"en-us"
_OUTPUT_SYNCHRONOUS, _CHARS_UTF8, _PHONEMES_IPA = 0x02, 0x01, 0x02
_DONT_EXIT = 0x8000  # without it a failed data load ends the whole process (exit(1) inside the library)
_LOCK = threading.RLock()  # the library keeps one global state
_loaded: ctypes.CDLL | None = None


def _library() -> ctypes.CDLL:
    """The initialised library (loaded once, under the lock)."""
    global _loaded
    with _LOCK:
        if _loaded is None:
            try:
                import espeakng_loader
                lib = ctypes.CDLL(espeakng_loader.get_library_path())
                data = espeakng_loader.get_data_path()
            except ModuleNotFoundError:
                raise DataError(f"phonemes need espeak-ng: {INSTALL_HINT}") from None
            except (OSError, RuntimeError) as error:
                raise DataError(f"espeak-ng (espeakng-loader) is unusable: {error}") from None
            lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
            lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
            lib.espeak_Initialize(_OUTPUT_SYNCHRONOUS, 0, data.encode(), _DONT_EXIT)
            if lib.espeak_SetVoiceByName(_VOICE) != 0:  # also what fails when the data did not load
                raise DataError(f"espeak-ng (espeakng-loader) has no {_VOICE.decode()} voice in {data}")
            _loaded = lib
        return _loaded


def available() -> bool:
    try:
        _library()
    except DataError:
        return False
    return True


@functools.lru_cache(maxsize=65536)
def ipa(text: str) -> str:
    """US English IPA of ``text``, words separated by single spaces, stress marks removed."""
    with _LOCK:
        lib = _library()
        buffer = ctypes.create_string_buffer(text.encode("utf-8"))
        cursor = ctypes.c_void_p(ctypes.addressof(buffer))
        clauses = []
        while cursor.value:  # one clause per call; the library moves the cursor, NULL at the end
            clauses.append((lib.espeak_TextToPhonemes(ctypes.byref(cursor), _CHARS_UTF8, _PHONEMES_IPA) or b"").decode())
    return " ".join(" ".join(clauses).replace("ˈ", "").replace("ˌ", "").split())
