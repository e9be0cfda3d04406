"""Nouns (short noun phrases) out of a caption, offline, by rules: GroupViT's multi-label prompts need them.

GroupViT extracts nouns with NLTK's part-of-speech tagger, whose model is a download. This extractor needs none:
a caption is split at punctuation and at closed-class words (articles, pronouns, prepositions, conjunctions,
auxiliaries, numerals and quantifiers, picture-frame words such as "photo of", spatial words such as "left of"),
and each remaining run of words is one phrase. A word ending in -ing/-ed that is not a known noun ("riding",
"parked") also splits, as does a verb from a short list ("sits", "holds"). The head noun (last word) is made
singular by English rules plus a table of irregular plurals, and a phrase keeps at most its last ``max_words``
words ("a big old red double-decker bus" -> "red double-decker bus").

What it does on real captions: on alt-text like "A man riding a horse on a beach at sunset" it gives
``["man", "horse", "beach", "sunset"]``; "Two dogs are playing with a red frisbee in the park" gives
``["dog", "red frisbee", "park"]``; "People walking down a busy city street" gives ``["person", "busy city
street"]``. It has no tagger, so it errs where a tagger would not: adjectives stay in the phrase ("busy"), a
verb it does not list and that does not end in -ing/-ed joins a phrase ("kids swim" stays "kids swim"), and a noun
used as a verb is taken as a noun. On the synthetic world's captions,
whose grammar it covers, it returns exactly the described objects and backgrounds ("a green block, an orange
heart and a green cross on water" -> ``["green block", "orange heart", "green cross", "water"]``).
"""
from __future__ import annotations

import re

#: closed-class words and caption boilerplate: never part of a noun phrase, and they end one
STOP_WORDS = frozenset("""
a an the this that these those some any each every either neither no other another such what which whose
i me my mine we us our you your he him his she her it its they them their there here who whom
of in on at to into onto from by with without within for about above below under over across along around
through between among behind beside besides beneath near next against toward towards upon inside outside
off up down out away before after during while until than as like via per
and or but nor so yet also then too very just only not
is are was were be been being am has have had having do does did can could will would shall should may might must
two three four five six seven eight nine ten eleven twelve several many much few lot lots plenty
one ones both all most more less
photo photograph picture image pic snapshot view shot closeup close-up showing shows shown depicting displays
left right top bottom front middle center centre side corner background foreground
""".split())
#: verbs of everyday captions that carry no -ing/-ed ending to recognise them by
VERBS = frozenset("""
sits sit stands stand lies lie holds hold looks look walks walk runs run rides ride flies fly eats eat
plays play jumps jump sleeps sleep waits wait carries carry wears wear floats float hangs hang
""".split())
#: -ing / -ed words that are nouns
ING_ED_NOUNS = frozenset("""
building buildings ceiling ceilings painting paintings clothing string strings pudding wedding evening morning
spring ring rings king wing wings thing things sibling siblings bed sled shed bread head seed seeds weed hundred
""".split())
IRREGULAR_PLURALS = {
    "men": "man", "women": "woman", "children": "child", "people": "person", "feet": "foot", "teeth": "tooth",
    "mice": "mouse", "geese": "goose", "oxen": "ox", "sheep": "sheep", "fish": "fish", "deer": "deer",
    "knives": "knife", "leaves": "leaf", "wolves": "wolf", "shelves": "shelf", "loaves": "loaf",
    "halves": "half", "wives": "wife", "lives": "life", "skies": "sky", "glasses": "glass", "buses": "bus",
}
#: words ending in s that are not plurals
NOT_PLURAL = frozenset("glass grass gas bus lens cross dress news series species canvas class chess moss "
                       "this is was has his its chassis".split())
_TOKEN = re.compile(r"[a-z][a-z'-]*|[0-9]+|[^\sa-z0-9]")


def singular(word: str) -> str:
    """The singular of an English noun (rules plus irregular plurals; unknown forms are kept)."""
    if word in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[word]
    if word in NOT_PLURAL or len(word) <= 3 or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "zes", "sses")):
        return word[:-2]
    return word[:-1] if word.endswith("s") else word


def _is_verb_form(word: str) -> bool:
    if word in ING_ED_NOUNS:
        return False
    return word in VERBS or (len(word) > 4 and word.endswith(("ing", "ed")))


def _phrases(caption: str) -> list[list[str]]:
    """Runs of content words between punctuation, closed-class words and verb forms."""
    runs: list[list[str]] = [[]]
    for token in _TOKEN.findall(caption.lower()):
        word = token.strip("'-")
        breaks = not word or not word[0].isalpha() or word in STOP_WORDS or _is_verb_form(word)
        if breaks:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(word.removesuffix("'s"))
    return [run for run in runs if run]


def extract_nouns(caption: str, max_words: int = 3) -> list[str]:
    """The caption's noun phrases in order of appearance, each once, head noun singular.

    Args:
        caption: any English caption.
        max_words: words kept per phrase, counted back from the head noun.
    """
    found: dict[str, None] = {}
    for run in _phrases(caption):
        words = run[-max_words:] if max_words > 0 else run
        words[-1] = singular(words[-1])
        found.setdefault(" ".join(words), None)
    return list(found)
