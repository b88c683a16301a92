#!/usr/bin/env python
"""Build the bundled offline dataset shards: ``mllm_shapx/bundled/<subset>/test.parquet``.

An offline stand-in for the Hub dataset ``Pawlo77/mllm-shap`` (subsets ``single_sentence``,
``multi_sentence``, ``multi_lingual``, split ``test``), with the original's columns:

- single_sentence: ``prompt``, ``language``, ``original_language``, ``token_count``
- multi_sentence:  ``sentences`` (2-4 user turns), ``language``, ``original_language``, ``token_count``
- multi_lingual:   ``prompt``, ``language``, ``original_language``, ``token_count``

Every text is written in this file (hand-written prompts; no network). ``token_count`` is the number
of explainable tokens of the prompt (all sentences summed) under the SmolLM2-135M-Instruct tokenizer
(``mllm_shapx.data.count_explainable_tokens`` with the ``exclude_punctuation`` filter).

Speech (SPEC §3 audio columns): ``audio__original``, ``audio__male``, ``audio__female`` hold 16 kHz
mono PCM_16 WAV bytes synthesised offline from each row's text with Debian's ``espeak-ng`` (one clip
per row; for ``multi_sentence`` a list with one clip per sentence). Voices (``VOICE_FOR_LANGUAGE``,
``VOICE_VARIANTS``): ``audio__original`` = the row language's default espeak voice (``en``, ``fr``,
``de``, ``es``, ``it``, ``pl``; a male voice, median pitch about 105 Hz); ``audio__male`` = that voice
with the ``+m4`` variant (lower pitch, about 96 Hz, and raised formants: another male voice; ``+m3``
is nearly the default voice); ``audio__female`` = with ``+f3`` (about 220 Hz). 175 words per minute
(espeak's default).

Signal path: espeak-ng writes 22,050 Hz int16; the speech is cut out and given exactly 40 ms of
silence on each side (espeak adds 0-300 ms); the clip is resampled to 16 kHz with a numpy polyphase
windowed-sinc filter (Kaiser, beta 8.6, 96 taps per phase, cutoff 7.2 kHz: flat to 6.5 kHz, aliasing
below -90 dB), so neither sox nor scipy is needed; the level is scaled by a fixed 0.9 (espeak peaks
reach full scale and resampling overshoots); the WAV is written with the standard-library ``wave``
module (plain 44-byte header). espeak-ng is needed only to build: the committed files are read with
``soundfile`` (``mllm_shapx.data.decode_wav``).

Size: 16 kHz PCM_16 is 32 kB per second per voice and barely compresses (zstd: about 1.3x), so audio
for every row would be about 57 MB. The committed shards carry audio for the first rows of each subset
only (``AUDIO_ROWS``: run audio modalities with ``selection.max_samples`` up to that number); the other
rows hold nulls in the audio columns. ``--audio-rows all --out DIR`` builds full-audio shards locally
(use them with ``dataset.path=DIR/<subset>``).

Deterministic: fixed row order, fixed schema, no timestamps; two runs write identical bytes (with
the same pyarrow, numpy and espeak-ng versions; the espeak-ng version is recorded in the parquet
schema metadata). Usage::

    python scripts/build_bundled_data.py              # rewrite mllm_shapx/bundled/ (needs espeak-ng)
    python scripts/build_bundled_data.py --no-audio   # text columns only (no espeak-ng needed)
    python scripts/build_bundled_data.py --out DIR    # write elsewhere
    python scripts/build_bundled_data.py --check      # build into a temp dir, compare with the committed files
    python scripts/build_bundled_data.py --check --no-audio   # compare the text columns only

``--check`` compares table contents: the schema (with the audio metadata), every text cell, and every
audio clip (its bytes, or else its decoded samples, which may differ by 1 LSB where floating-point
rounding differs between machines).
"""

from __future__ import annotations

import argparse
import collections
import filecmp
import functools
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from mllm_shapx.data import AUDIO_COLUMNS, BUNDLED_SUBSETS, count_explainable_tokens  # noqa: E402

TOKENIZER_MODEL = "embedded:SmolLM2-135M-Instruct"
TOKEN_FILTER = "exclude_punctuation"
SPLIT = "test"
DEFAULT_OUT = REPO_ROOT / "mllm_shapx" / "bundled"
SUBSETS = BUNDLED_SUBSETS

# --------------------------------------------------------------------------------------------------
# Texts. Row order = order below. English prompts of varied topics and lengths (about 5-25
# explainable tokens; at least 20 with exactly 15, the original's favourite bucket).
# --------------------------------------------------------------------------------------------------

SINGLE_SENTENCE = [
    "What is the capital of France?",
    "Explain in simple words why leaves change their color and fall from trees in autumn.",
    "Why is the sky blue?",
    "Describe what a lighthouse does and why ships still need them in the modern age.",
    "Write a short dialogue between a cat and a dog who are arguing about who gets the sunny spot.",
    "Translate \"good morning\" into Spanish.",
    "What is the boiling point of water at sea level?",
    "Explain the difference between a virus and a bacterium in words a teenager would understand.",
    "Who wrote Romeo and Juliet?",
    "How can a family save money on groceries each month without eating less healthy food?",
    "Give me one tip for sleeping better at night.",
    "Explain how vaccines teach the immune system to recognize and fight a disease before a person gets sick.",
    "Write a friendly message inviting my coworkers to a picnic in the park on Saturday.",
    "What is two plus two?",
    "Describe the taste of a ripe mango in one sentence.",
    "What are the main reasons people in many countries choose to ride bicycles to work?",
    "Suggest a name for a pet turtle.",
    "Explain how a library decides which new books to buy for its readers each year.",
    "What are the pros and cons of working from home compared with working in an office every single day?",
    "Explain what a rainbow is to a five year old child.",
    "Describe the life cycle of a butterfly from the egg to the adult with wings.",
    "Write a short poem about the ocean and the moon.",
    "Explain what a budget is and why students should make one when they start university.",
    "List three vegetables that grow well in a small garden.",
    "Write two sentences describing a quiet snowy village at night just before the winter holidays.",
    "What is the difference between weather and climate?",
    "Write a short product description for a reusable water bottle that keeps drinks cold for a whole day.",
    "Write a short thank you note to a teacher who helped me pass my exam.",
    "How do plants turn sunlight into food for themselves?",
    "How long should I boil an egg if I want the yolk to stay soft?",
    "Can you recommend a good book for a long train journey?",
    "What is the easiest way to keep fresh herbs alive on a sunny windowsill?",
    "What are the main causes of traffic jams in big cities?",
    "Give me step by step instructions for planting a small apple tree in the garden so that it grows well.",
    "Why do we see lightning before we hear the thunder during a big summer storm?",
    "Explain why we need to drink water every day to stay healthy.",
    "What should a beginner know before planting tomatoes in a garden for the first time?",
    "Give me a simple recipe for pancakes that uses only five ingredients.",
    "How do volcanoes form, and why are some of them still active while others sleep?",
    "Tell me a fun fact about octopuses that most people do not know.",
    "Explain to a ten year old how the internet sends a message from one computer to another across the world.",
    "What are some good ways to make new friends after moving to a new city?",
    "What should I pack for a weekend camping trip in the mountains?",
    "How does the heart pump blood through the body, and what happens when we run?",
    "Write one sentence that encourages a friend who is nervous before an exam.",
    "Plan a three day trip to Rome for a couple who loves history, good food, and long walks in the evening.",
    "What are the benefits of reading a paper book instead of a screen before bed?",
    "Explain how a bicycle stays upright when it is moving forward.",
    "Suggest a healthy lunch that I can prepare in ten minutes and take to work.",
    "How can I make my small apartment feel more spacious and bright?",
    "Why do some birds fly south for the winter while others stay in one place?",
    "I am learning to cook, so please explain how to make a simple tomato sauce for pasta from fresh tomatoes and garlic.",
    "What are three good habits for staying focused while studying at home?",
    "Summarize the story of Cinderella in two short sentences for a child.",
    "Describe a busy market in the morning using all five senses.",
    "Explain the rules of chess to someone who has never played a board game before.",
    "Why do cats like to sleep in boxes and other small spaces?",
    "What would happen to the tides on Earth if the Moon suddenly disappeared one night?",
    "Write a short speech that a student could give at the end of the school year to thank the teachers and the other students.",
    "How does a refrigerator keep food cold without using any ice?",
    "Describe a perfect summer day at the beach for a family with two small children.",
    "What is the best way to learn the basics of a new language quickly?",
    "Write a polite email asking my neighbor to turn down the music after ten at night.",
    "What is a black hole?",
    "Give me three ideas for a birthday party for a seven year old who loves dinosaurs and space.",
    "Who painted the Mona Lisa?",
    "Compare trains and airplanes for a trip of about five hundred kilometers in terms of cost and time.",
    "Name a fruit that is yellow.",
    "Describe how bread is made, from the wheat growing in the field to the loaf that we buy at the bakery in the morning.",
    "What language is spoken in Brazil?",
    "What are the most important things to check before buying a used car?",
    "Is a tomato a fruit?",
    "Give me a simple plan for running five kilometers after four weeks of training.",
    "How big is the Pacific Ocean?",
    "Tell me why it is a good idea to back up the photos on my laptop.",
    "Recommend a movie for a rainy Sunday.",
    "Suggest a relaxing evening routine for someone who works long hours at a computer.",
    "What does a librarian do all day?",
    "Give me three questions I could ask at the end of a job interview.",
    "Why do onions make people cry?",
    "Why is it important to stretch before and after doing exercise such as running?",
    "What is the tallest mountain in the world?",
    "Tell me a short story about a robot who learns to paint the sea.",
    "How do I politely decline an invitation?",
    "What advice would you give to a young person who wants to become a nurse and help people in a busy hospital every day?",
    "What is the largest planet in our solar system?",
    "Write a haiku about a cup of hot tea.",
    "Explain what recycling means and why it helps.",
    "Explain why it is dangerous to swim in the sea during a storm, and what a swimmer should do if caught in a strong current.",
    "How does a compass always point to the north?",
    "What are the health benefits of eating fresh fruit?",
    "Give me a short motivational quote for a Monday morning.",
    "Describe the sound of rain on a tin roof.",
    "What is the difference between a lake and a sea?",
    "How can I stop my glasses from fogging up in winter?",
    "Why do people celebrate the new year with fireworks?",
    "Explain how an airplane is able to fly through the air.",
    "What are three easy ways to reduce plastic waste at home?",
    "Write a short riddle whose answer is a clock.",
    "What should I do if my bicycle tire goes flat far from home?",
    "Explain why the Moon looks different on different nights of the month.",
    "How do magnets work in practice?",
    "Name three primary colors, please.",
    "What do honey bees make?",
    "Where do wild penguins live?",
    "What is the speed of light?",
    "Tell me a joke about vegetables.",
    "How many days are in a leap year?",
    "Why do we need to sleep every night?",
    "Write a limerick about a forgetful wizard who lives in a tall tower.",
    "Explain how a rainbow forms after rain, and why its colors always appear in the same order.",
    "Describe the main differences between a crocodile and an alligator so that a child can tell them apart.",
    "Write a short note to a friend who just moved abroad, telling them about your week and asking about theirs.",
    "Explain how a solar panel on the roof of a house turns sunlight into the electricity that powers the lights.",
    "Give me a packing list for a one week holiday by the sea in July with a baby and a small dog.",
    "Imagine you are a tour guide in London and describe three places a visitor should see on their very first day.",
    "Explain the water cycle, starting with the sun warming the ocean and ending with rain falling on the mountains again.",
    "Write a short review of an imaginary restaurant that serves only soup, mentioning the service, the prices, and the best dish.",
    "My grandmother wants to start using a smartphone, so what are the first five things I should teach her?",
    "Explain what happens in the body when we catch a cold, and why rest and warm drinks often help us feel better.",
    "Suggest a weekly exercise plan for a busy parent who has only twenty minutes a day and no equipment at home.",
    "Explain why the ocean is salty while the water in most rivers and lakes tastes so fresh.",
    "Write a short poem about a slow train crossing a snowy valley at night under the stars.",
    "Explain how a hot air balloon rises into the sky and how the pilot is able to bring it safely back down again.",
    "I want to start a small vegetable garden on my balcony this spring, so which plants should I choose and how often should I water?",
    "Write a short bedtime story about a little fox who is afraid of the dark and finds a friend in the deep forest.",
    "Tell me how to prepare for a job interview, including what to wear, what to bring, and which questions to expect.",
    "Describe how a honey bee colony works, including the roles of the queen, the workers, and the drones living in the hive.",
]

# Each row: 2-4 user turns of one conversation.
MULTI_SENTENCE = [
    ["I am planning a trip to Japan in April.", "What should I pack for the weather there?"],
    ["My tomato plants have yellow leaves.", "What could be wrong with them?"],
    ["I want to learn to play the guitar.", "I practice thirty minutes a day.", "How long until I can play a simple song?"],
    ["Our team meeting starts at nine.", "Write a short agenda with three points."],
    ["I have eggs, spinach and cheese in the fridge.", "Suggest a quick dinner I can cook tonight."],
    ["My cat keeps scratching the sofa.", "How can I stop this without punishing her?"],
    ["I started running last month.", "My knees hurt after long runs.", "What should I change in my training?"],
    ["Tell me about the planet Mars.", "Could people ever live there?"],
    ["I am writing a birthday card for my grandfather.", "He loves fishing and old films.", "Give me two warm sentences I could write."],
    ["The battery of my phone drains very fast.", "What settings should I check first?"],
    ["I read that honey never spoils.", "Is that true, and why?"],
    ["We are moving to a new house next week.", "I have two children and a dog.", "How can I make the move less stressful for them?"],
    ["I need to give a five minute talk at school.", "The topic is water pollution.", "Suggest a structure for the talk."],
    ["My friend is sad because she lost her job.", "What can I say to support her?"],
    ["Explain what a volcano is.", "Then tell me about a famous eruption."],
    ["I bought a small aquarium.", "Which fish are easy for beginners?", "How often should I clean the water?"],
    ["I often forget people's names.", "Are there tricks to remember them better?"],
    ["Let us play a word game.", "Give me five words that rhyme with light."],
    ["I want to eat less sugar.", "I drink three sodas a day.", "What could I drink instead?"],
    ["My bread never rises in the oven.", "I use dry yeast and warm water.", "What am I doing wrong?"],
    ["Describe a sunset over the sea.", "Now describe the same place at dawn."],
    ["I am nervous about my driving test tomorrow.", "Give me three tips to stay calm."],
    ["Our school garden needs new plants.", "The soil is sandy and dry.", "Which flowers would grow well?", "How often should the children water them?"],
    ["What is the difference between a frog and a toad?", "Which one lives longer?"],
    ["I have a job interview at a bakery.", "What questions might they ask me?"],
    ["My laptop is very slow when it starts.", "It is five years old.", "Should I repair it or buy a new one?"],
    ["Write the first line of a mystery story.", "Now add a second line with a surprise."],
    ["I want to visit a museum this weekend.", "My son is eight and loves trains.", "What kind of museum would he enjoy?"],
    ["Explain how rain forms in clouds.", "Why does it sometimes fall as snow?"],
    ["I bake cookies for my neighbors every winter.", "This year I want to try something new.", "Suggest a simple recipe with oranges."],
    ["My plants on the balcony get too much sun.", "How can I protect them in July?"],
    ["I am learning French.", "How do I say thank you very much?", "And how do I answer politely?"],
    ["Our town wants more people to cycle.", "What could the council build or change?"],
    ["Tell me a short fable about a turtle.", "What is the lesson of the fable?"],
    ["I feel tired every afternoon at work.", "I sleep seven hours a night.", "What might help me stay awake?"],
    ["My grandmother gave me an old camera.", "It uses film, not a memory card.", "How do I load the film?", "Where can I develop the photos?"],
    ["Why do leaves fall in autumn?", "Do all trees lose their leaves?"],
    ["I want to surprise my partner with breakfast in bed.", "She likes fruit and coffee.", "Plan a simple menu for me."],
    ["Our class is studying the solar system.", "Give me a fun fact about each of the four inner planets."],
    ["I found a small bird on the ground.", "It cannot fly yet.", "Should I pick it up or leave it there?"],
]

# Multi-lingual rows: (prompt, language, original_language). Eight English prompts with their
# translations (original_language "en"), native prompts in each language (original_language equal to
# the language), and English translations of two native prompts (language "en", original "fr"/"pl").
_ML_SOURCES = [
    {
        "en": "What is the capital of Italy?",
        "fr": "Quelle est la capitale de l'Italie ?",
        "de": "Was ist die Hauptstadt von Italien?",
        "es": "¿Cuál es la capital de Italia?",
        "it": "Qual è la capitale dell'Italia?",
        "pl": "Jaka jest stolica Włoch?",
    },
    {
        "en": "How many days are there in a week?",
        "fr": "Combien de jours y a-t-il dans une semaine ?",
        "de": "Wie viele Tage hat eine Woche?",
        "es": "¿Cuántos días hay en una semana?",
        "it": "Quanti giorni ci sono in una settimana?",
        "pl": "Ile dni ma tydzień?",
    },
    {
        "en": "Why is the sky blue during the day?",
        "fr": "Pourquoi le ciel est-il bleu pendant la journée ?",
        "de": "Warum ist der Himmel tagsüber blau?",
        "es": "¿Por qué el cielo es azul durante el día?",
        "it": "Perché il cielo è blu durante il giorno?",
        "pl": "Dlaczego niebo jest niebieskie w ciągu dnia?",
    },
    {
        "en": "Give me a simple recipe for a vegetable soup.",
        "fr": "Donne-moi une recette simple de soupe aux légumes.",
        "de": "Gib mir ein einfaches Rezept für eine Gemüsesuppe.",
        "es": "Dame una receta sencilla de sopa de verduras.",
        "it": "Dammi una ricetta semplice per una zuppa di verdure.",
        "pl": "Podaj mi prosty przepis na zupę jarzynową.",
    },
    {
        "en": "What is the best way to learn a new language?",
        "fr": "Quelle est la meilleure façon d'apprendre une nouvelle langue ?",
        "de": "Was ist der beste Weg, eine neue Sprache zu lernen?",
        "es": "¿Cuál es la mejor manera de aprender un idioma nuevo?",
        "it": "Qual è il modo migliore per imparare una nuova lingua?",
        "pl": "Jaki jest najlepszy sposób na naukę nowego języka?",
    },
    {
        "en": "Describe a beautiful autumn day in the park.",
        "fr": "Décris une belle journée d'automne dans le parc.",
        "de": "Beschreibe einen schönen Herbsttag im Park.",
        "es": "Describe un hermoso día de otoño en el parque.",
        "it": "Descrivi una bella giornata d'autunno nel parco.",
        "pl": "Opisz piękny jesienny dzień w parku.",
    },
    {
        "en": "How does the sun produce light and heat?",
        "fr": "Comment le soleil produit-il de la lumière et de la chaleur ?",
        "de": "Wie erzeugt die Sonne Licht und Wärme?",
        "es": "¿Cómo produce el sol luz y calor?",
        "it": "Come produce il sole luce e calore?",
        "pl": "W jaki sposób słońce wytwarza światło i ciepło?",
    },
    {
        "en": "Write a short poem about the sea.",
        "fr": "Écris un court poème sur la mer.",
        "de": "Schreibe ein kurzes Gedicht über das Meer.",
        "es": "Escribe un poema corto sobre el mar.",
        "it": "Scrivi una breve poesia sul mare.",
        "pl": "Napisz krótki wiersz o morzu.",
    },
]
_ML_LANGUAGES = ("en", "fr", "de", "es", "it", "pl")
_ML_NATIVE = [
    ("Quels fromages faut-il goûter lors d'un voyage en Normandie ?", "fr"),
    ("Explique la différence entre un croissant et un pain au chocolat.", "fr"),
    ("Was sollte man bei einer Wanderung in den Alpen immer dabeihaben?", "de"),
    ("Erkläre kurz, wie die Mülltrennung in Deutschland funktioniert.", "de"),
    ("¿Qué ingredientes lleva una paella valenciana tradicional?", "es"),
    ("Explica por qué la siesta es una costumbre tan conocida en España.", "es"),
    ("Come si prepara un vero caffè espresso a casa con la moka?", "it"),
    ("Quali sono le città più belle da visitare in Toscana?", "it"),
    ("Jak przygotować tradycyjne pierogi ruskie na świąteczny obiad?", "pl"),
    ("Dlaczego Kraków jest tak popularnym miejscem wśród turystów?", "pl"),
]
_ML_BACK_TRANSLATIONS = [
    ("Which cheeses should you taste on a trip to Normandy?", "en", "fr"),
    ("How do you make traditional potato and cheese pierogi for a holiday dinner?", "en", "pl"),
]


def multi_lingual_rows() -> list[tuple[str, str, str]]:
    rows = []
    for source in _ML_SOURCES:  # grouped by prompt: en, fr, de, es, it, pl
        for lang in _ML_LANGUAGES:
            rows.append((source[lang], lang, "en"))
    rows.extend((text, lang, lang) for text, lang in _ML_NATIVE)
    rows.extend(_ML_BACK_TRANSLATIONS)
    return rows


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------

TEXT_SCHEMAS = {
    "single_sentence": pa.schema(
        [("prompt", pa.string()), ("language", pa.string()), ("original_language", pa.string()), ("token_count", pa.int64())]
    ),
    "multi_sentence": pa.schema(
        [
            ("sentences", pa.list_(pa.string())),
            ("language", pa.string()),
            ("original_language", pa.string()),
            ("token_count", pa.int64()),
        ]
    ),
    "multi_lingual": pa.schema(
        [("prompt", pa.string()), ("language", pa.string()), ("original_language", pa.string()), ("token_count", pa.int64())]
    ),
}
# Arrow types of the audio columns: WAV bytes per row, a list of them (one per sentence) for
# multi_sentence; null for rows without audio.
AUDIO_TYPES = {
    "single_sentence": pa.binary(),
    "multi_sentence": pa.list_(pa.binary()),
    "multi_lingual": pa.binary(),
}

# subset -> list of (texts, language, original_language)
RowSpec = tuple[list[str], str, str]


def row_specs(subset: str) -> list[RowSpec]:
    if subset == "single_sentence":
        return [([p], "en", "en") for p in SINGLE_SENTENCE]
    if subset == "multi_sentence":
        return [(list(s), "en", "en") for s in MULTI_SENTENCE]
    if subset == "multi_lingual":
        return [([p], lang, orig) for p, lang, orig in multi_lingual_rows()]
    raise ValueError(f"unknown subset {subset!r}; known: {', '.join(SUBSETS)}")


def load_tokenizer():
    from transformers import AutoTokenizer

    from mllm_shapx.connectors.embedded import resolve_embedded

    return AutoTokenizer.from_pretrained(resolve_embedded(TOKENIZER_MODEL))


AudioFn = Callable[[str, list[RowSpec]], dict[str, list[Any]]]


# --------------------------------------------------------------------------------------------------
# Speech (espeak-ng -> trim -> 16 kHz -> WAV PCM_16)
# --------------------------------------------------------------------------------------------------

ESPEAK = "espeak-ng"
ESPEAK_APT_PACKAGE = "espeak-ng"
SAMPLE_RATE = 16000
SPEECH_RATE_WPM = 175  # espeak-ng's default
# espeak-ng voice per row language; the variant per audio column (`espeak-ng --voices=variant`).
VOICE_FOR_LANGUAGE = {"en": "en", "fr": "fr", "de": "de", "es": "es", "it": "it", "pl": "pl"}
VOICE_VARIANTS = {"audio__original": "", "audio__male": "+m4", "audio__female": "+f3"}
# Committed shards: audio for the first N rows of each subset (None = every row); see the docstring.
AUDIO_ROWS: dict[str, int | None] = {"single_sentence": 8, "multi_sentence": 4, "multi_lingual": 6}
TRIM_THRESHOLD = 1e-3  # |sample| (full scale 1.0) where speech starts / ends
TRIM_PAD_SECONDS = 0.04  # silence on each side of the speech
GAIN = 0.9  # fixed level scale: headroom for resampling overshoot (espeak peaks reach full scale)
FILTER_HALF_TAPS = 48  # resampling filter: taps on each side, in input samples
FILTER_CUTOFF = 0.45  # resampling filter cutoff, as a fraction of the lower sample rate
FILTER_KAISER_BETA = 8.6
AUDIO_METADATA_KEY = b"mllm_shapx.audio"


class EspeakMissing(RuntimeError):
    """espeak-ng is needed to synthesise the audio columns and is not installed."""


def espeak_executable() -> str:
    path = shutil.which(ESPEAK)
    if path is None:
        raise EspeakMissing(
            f"{ESPEAK} not found on PATH; it synthesises the audio columns. Install the Debian/Ubuntu package "
            f"'{ESPEAK_APT_PACKAGE}' (apt-get install -y --no-install-recommends {ESPEAK_APT_PACKAGE}), "
            "or pass --no-audio to build the text columns only"
        )
    return path


def espeak_version() -> str:
    out = subprocess.run([espeak_executable(), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"text-to-speech:\s*(\S+)", out)
    return match.group(1) if match else out.split("Data at")[0].strip()


def read_pcm16(data: bytes) -> tuple[np.ndarray, int]:
    """int16 samples (mono) and sample rate of PCM_16 WAV bytes."""
    import soundfile as sf

    samples, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    if samples.shape[1] != 1:
        raise ValueError(f"expected mono audio, got {samples.shape[1]} channels")
    return samples[:, 0], int(rate)


def synthesize(text: str, voice: str, rate_wpm: int = SPEECH_RATE_WPM) -> tuple[np.ndarray, int]:
    """espeak-ng speech of ``text``: float64 samples (full scale 1.0) and their sample rate (22,050 Hz)."""
    command = [espeak_executable(), "-v", voice, "-s", str(rate_wpm), "-b", "1", "--stdout", "--stdin"]
    proc = subprocess.run(command, input=text.encode("utf-8"), capture_output=True)
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    if proc.stderr.strip():  # e.g. an unknown voice is reported on stderr, with a fallback voice
        raise RuntimeError(f"{' '.join(command)}: {proc.stderr.decode(errors='replace').strip()}")
    samples, rate = read_pcm16(proc.stdout)
    return samples.astype(np.float64) / 32768.0, rate


def trim_silence(samples: np.ndarray, rate: int) -> np.ndarray:
    """The speech (first to last sample above ``TRIM_THRESHOLD``) with exactly ``TRIM_PAD_SECONDS`` of
    digital silence on each side (espeak-ng adds 0-50 ms before and 180-300 ms after the speech)."""
    loud = np.flatnonzero(np.abs(samples) > TRIM_THRESHOLD)
    if loud.size == 0:
        raise ValueError("espeak-ng produced silence")
    pad = np.zeros(int(round(TRIM_PAD_SECONDS * rate)))
    return np.concatenate([pad, samples[int(loud[0]): int(loud[-1]) + 1], pad])


@functools.lru_cache(maxsize=8)
def _filter_bank(up: int, down: int) -> tuple[np.ndarray, np.ndarray]:
    """Polyphase windowed-sinc filter for resampling by up/down: tap offsets (input samples relative to
    floor(t)) and one row of taps per output phase (t - floor(t) = phase / up), each summing to 1."""
    half = FILTER_HALF_TAPS
    offsets = np.arange(-half + 1, half + 1)
    cutoff = FILTER_CUTOFF * min(1.0, up / down)  # cycles per input sample
    tau = (np.arange(up)[:, None] / up) - offsets[None, :]  # t - j, |tau| <= half
    window = np.i0(FILTER_KAISER_BETA * np.sqrt(np.clip(1.0 - (tau / half) ** 2, 0.0, None))) / np.i0(FILTER_KAISER_BETA)
    taps = 2.0 * cutoff * np.sinc(2.0 * cutoff * tau) * window
    taps /= taps.sum(axis=1, keepdims=True)
    return offsets, taps


def resample(samples: np.ndarray, rate_in: int, rate_out: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling (polyphase windowed sinc, Kaiser window): output sample n sits at input
    time n * rate_in / rate_out. Plain numpy, deterministic."""
    samples = np.asarray(samples, dtype=np.float64)
    if rate_in == rate_out:
        return samples.copy()
    g = math.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    offsets, taps = _filter_bank(up, down)
    half = FILTER_HALF_TAPS
    padded = np.concatenate([np.zeros(half), samples, np.zeros(half)])
    n_out = (len(samples) - 1) * up // down + 1
    out = np.empty(n_out)
    for start in range(0, n_out, 8192):
        n = np.arange(start, min(n_out, start + 8192), dtype=np.int64)
        base, phase = np.divmod(n * down, up)
        window = padded[base[:, None] + offsets[None, :] + half]
        out[start:start + len(n)] = np.sum(window * taps[phase], axis=1)
    return out


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """Mono PCM_16 WAV (standard-library writer: a plain 44-byte header, no timestamps)."""
    pcm = np.clip(np.round(np.asarray(samples) * 32768.0), -32768, 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def speech_clip(text: str, voice: str) -> bytes:
    """16 kHz mono PCM_16 WAV bytes of ``text`` spoken by espeak-ng ``voice``."""
    samples, rate = synthesize(text, voice)
    return wav_bytes(GAIN * resample(trim_silence(samples, rate), rate, SAMPLE_RATE), SAMPLE_RATE)


def voices_for(language: str) -> dict[str, str]:
    """Audio column -> espeak-ng voice for a row language."""
    if language not in VOICE_FOR_LANGUAGE:
        raise ValueError(f"no espeak-ng voice configured for language {language!r} (VOICE_FOR_LANGUAGE)")
    base = VOICE_FOR_LANGUAGE[language]
    return {column: base + variant for column, variant in VOICE_VARIANTS.items()}


class EspeakAudio:
    """The ``audio`` callable of :func:`build_table`: the three audio columns of a subset, spoken by
    espeak-ng, for the first ``rows[subset]`` rows (None: every row); null for the other rows."""

    def __init__(self, rows: dict[str, int | None] | None = None):
        espeak_executable()  # fail early, naming the apt package
        self.rows = dict(AUDIO_ROWS if rows is None else rows)
        self.version = espeak_version()
        self.seconds: dict[str, dict[str, float]] = {}  # subset -> column -> seconds of speech

    def rows_with_audio(self, subset: str, n_rows: int) -> int:
        limit = self.rows.get(subset)
        return n_rows if limit is None else min(int(limit), n_rows)

    def __call__(self, subset: str, specs: list[RowSpec]) -> dict[str, list[Any]]:
        n = self.rows_with_audio(subset, len(specs))
        per_sentence = pa.types.is_list(AUDIO_TYPES[subset])
        columns: dict[str, list[Any]] = {column: [] for column in AUDIO_COLUMNS}
        seconds = dict.fromkeys(AUDIO_COLUMNS, 0.0)
        for index, (texts, language, _) in enumerate(specs):
            voices = voices_for(language)
            for column in AUDIO_COLUMNS:
                if index >= n:
                    columns[column].append(None)
                    continue
                clips = [speech_clip(text, voices[column]) for text in texts]
                seconds[column] += sum((len(c) - 44) / 2 / SAMPLE_RATE for c in clips)
                if not per_sentence and len(clips) != 1:
                    raise ValueError(f"{subset} row {index}: {len(clips)} texts for a single-clip audio column")
                columns[column].append(clips if per_sentence else clips[0])
        self.seconds[subset] = seconds
        return columns

    def metadata(self, subset: str) -> dict[bytes, bytes]:
        """Parquet schema metadata describing how the audio was made (compared by ``--check``)."""
        info = {
            "synthesizer": f"espeak-ng {self.version}",
            "format": "WAV, PCM_16, mono",
            "sample_rate": SAMPLE_RATE,
            "speech_rate_wpm": SPEECH_RATE_WPM,
            "voices": {column: "<language voice>" + variant for column, variant in VOICE_VARIANTS.items()},
            "language_voices": VOICE_FOR_LANGUAGE,
            "rows_with_audio": self.rows_with_audio(subset, len(row_specs(subset))),
            "trim": {"threshold": TRIM_THRESHOLD, "pad_seconds": TRIM_PAD_SECONDS},
            "gain": GAIN,
            "resampler": {
                "kind": "polyphase windowed sinc (Kaiser)",
                "half_taps": FILTER_HALF_TAPS,
                "cutoff": FILTER_CUTOFF,
                "beta": FILTER_KAISER_BETA,
            },
        }
        return {AUDIO_METADATA_KEY: json.dumps(info, sort_keys=True).encode("utf-8")}


# --------------------------------------------------------------------------------------------------
# Building, writing, checking
# --------------------------------------------------------------------------------------------------


def build_table(subset: str, tokenizer: Any, audio: AudioFn | None = None) -> pa.Table:
    specs = row_specs(subset)
    counts = [count_explainable_tokens(tokenizer, texts, TOKEN_FILTER) for texts, _, _ in specs]
    columns: dict[str, list[Any]] = {}
    if subset == "multi_sentence":
        columns["sentences"] = [texts for texts, _, _ in specs]
    else:
        columns["prompt"] = [texts[0] for texts, _, _ in specs]
    columns["language"] = [lang for _, lang, _ in specs]
    columns["original_language"] = [orig for _, _, orig in specs]
    columns["token_count"] = counts
    schema = TEXT_SCHEMAS[subset]
    if audio is not None:
        extra = audio(subset, specs)
        for name in AUDIO_COLUMNS:
            if name in extra:
                if len(extra[name]) != len(specs):
                    raise ValueError(f"{subset}: audio column {name} has {len(extra[name])} rows, expected {len(specs)}")
                columns[name] = extra[name]
                schema = schema.append(pa.field(name, AUDIO_TYPES[subset]))
        metadata = getattr(audio, "metadata", None)
        if metadata is not None:
            schema = schema.with_metadata(metadata(subset))
    return pa.Table.from_pydict(columns, schema=schema)


def write_table(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # Pinned writer options: the bytes depend only on the data (and the pyarrow version).
    pq.write_table(
        table,
        tmp,
        compression="zstd",
        compression_level=9,
        use_dictionary=True,
        write_statistics=True,
        version="2.6",
        data_page_version="1.0",
        store_schema=True,
    )
    os.replace(tmp, path)


def check_requirements(subset: str, table: pa.Table) -> None:
    counts = table.column("token_count").to_pylist()
    if subset == "single_sentence":
        if counts.count(15) < 20:
            raise AssertionError(f"single_sentence needs >= 20 rows with token_count 15, has {counts.count(15)}")
        if min(counts) < 5 or max(counts) > 25:
            raise AssertionError(f"single_sentence token counts should lie in 5..25, got {min(counts)}..{max(counts)}")
    if subset == "multi_sentence":
        bad = [s for s in table.column("sentences").to_pylist() if not 2 <= len(s) <= 4]
        if bad:
            raise AssertionError(f"multi_sentence rows must have 2-4 sentences: {bad}")
    texts = table.column("sentences" if subset == "multi_sentence" else "prompt").to_pylist()
    if len(set(map(str, texts))) != len(texts):
        raise AssertionError(f"{subset}: duplicate prompts")
    for name in AUDIO_COLUMNS:
        if name not in table.column_names:
            continue
        for index, (clip, text) in enumerate(zip(table.column(name).to_pylist(), texts)):
            if clip is not None and isinstance(text, list) and len(clip) != len(text):
                raise AssertionError(f"{subset} row {index}: {len(clip)} {name} clips for {len(text)} sentences")


def build(out_dir: str | Path = DEFAULT_OUT, tokenizer: Any = None, audio: AudioFn | None = None) -> dict[str, Path]:
    """Write ``<out_dir>/<subset>/test.parquet`` for every subset; return subset -> path.

    ``audio``: None for the text columns only, or e.g. ``EspeakAudio()`` for the audio columns too."""
    out_dir = Path(out_dir)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer()
    written = {}
    for subset in SUBSETS:
        table = build_table(subset, tokenizer, audio)
        check_requirements(subset, table)
        path = out_dir / subset / f"{SPLIT}.parquet"
        write_table(table, path)
        written[subset] = path
    return written


def same_audio(a: Any, b: Any, tolerance: int = 1) -> bool:
    """Two audio cells (WAV bytes, a list of them, or None) hold the same clips: equal bytes, or equal
    sample rates and lengths with int16 samples at most ``tolerance`` apart."""
    if a == b:
        return True
    if a is None or b is None or isinstance(a, list) != isinstance(b, list):
        return False
    pairs = list(zip(a, b)) if isinstance(a, list) else [(a, b)]
    if isinstance(a, list) and len(a) != len(b):
        return False
    for x, y in pairs:
        if x == y:
            continue
        (xs, xr), (ys, yr) = read_pcm16(x), read_pcm16(y)
        if xr != yr or len(xs) != len(ys):
            return False
        if len(xs) and int(np.max(np.abs(xs.astype(np.int32) - ys.astype(np.int32)))) > tolerance:
            return False
    return True


def compare_tables(fresh: pa.Table, stored: pa.Table, audio: bool = True) -> list[str]:
    """Differences between a fresh build and a stored file (empty: up to date).

    Text columns are compared cell by cell (names, types, values). With ``audio`` the stored file must
    have exactly the fresh columns and audio metadata, and every audio cell must match (``same_audio``);
    without it, stored audio columns are ignored."""
    problems = []
    text_names = [n for n in fresh.column_names if n not in AUDIO_COLUMNS]
    stored_text = [n for n in stored.column_names if n not in AUDIO_COLUMNS]
    if stored_text != text_names:
        return [f"text columns {stored_text}, expected {text_names}"]
    if audio and stored.column_names != fresh.column_names:
        return [f"columns {stored.column_names}, expected {fresh.column_names}"]
    for name in stored.column_names if audio else text_names:
        if stored.schema.field(name).type != fresh.schema.field(name).type:
            problems.append(f"column {name}: type {stored.schema.field(name).type}, expected {fresh.schema.field(name).type}")
    if problems:
        return problems
    if stored.num_rows != fresh.num_rows:
        return [f"{stored.num_rows} rows, expected {fresh.num_rows}"]
    for name in text_names:
        if not stored.column(name).equals(fresh.column(name)):
            rows = [i for i, (a, b) in enumerate(zip(stored.column(name).to_pylist(), fresh.column(name).to_pylist())) if a != b]
            problems.append(f"column {name} differs in rows {rows[:10]}")
    if audio:
        meta_stored = (stored.schema.metadata or {}).get(AUDIO_METADATA_KEY)
        meta_fresh = (fresh.schema.metadata or {}).get(AUDIO_METADATA_KEY)
        if meta_stored != meta_fresh:
            problems.append(f"audio metadata differs: stored {meta_stored!r}, fresh {meta_fresh!r}")
        for name in AUDIO_COLUMNS:
            if name not in fresh.column_names:
                continue
            pairs = zip(stored.column(name).to_pylist(), fresh.column(name).to_pylist())
            rows = [i for i, (a, b) in enumerate(pairs) if not same_audio(a, b)]
            if rows:
                problems.append(f"column {name} differs in rows {rows[:10]}")
    return problems


def histogram(table: pa.Table) -> str:
    counts = collections.Counter(table.column("token_count").to_pylist())
    lines = [f"  {k:3d} | {'#' * v} {v}" for k, v in sorted(counts.items())]
    return "\n".join(lines)


def _audio_rows_arg(value: str | None) -> dict[str, int | None] | None:
    if value is None:
        return None
    if value == "all":
        return dict.fromkeys(SUBSETS)
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of rows or 'all', got {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return dict.fromkeys(SUBSETS, n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: mllm_shapx/bundled)")
    parser.add_argument("--check", action="store_true", help="build into a temp dir and compare with --out")
    parser.add_argument("--no-audio", action="store_true", help="text columns only (espeak-ng not needed)")
    parser.add_argument(
        "--audio-rows",
        type=_audio_rows_arg,
        default=None,
        metavar="N|all",
        help=f"audio for the first N rows of every subset, or all rows (default: {AUDIO_ROWS})",
    )
    args = parser.parse_args(argv)

    audio = None
    if not args.no_audio:
        try:
            audio = EspeakAudio(args.audio_rows)
        except EspeakMissing as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    started = time.perf_counter()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = build(tmp, audio=audio)
            differ = {}
            for subset, path in fresh.items():
                target = args.out / subset / path.name
                if not target.is_file():
                    differ[subset] = [f"{target} missing"]
                elif audio is None or not filecmp.cmp(path, target, shallow=False):
                    problems = compare_tables(pq.read_table(path), pq.read_table(target), audio=audio is not None)
                    if problems:
                        differ[subset] = problems
        what = "text and audio" if audio is not None else "text columns"
        if differ:
            for subset, problems in differ.items():
                print(f"out of date: {subset}: " + "; ".join(problems))
            print("run scripts/build_bundled_data.py")
            return 1
        print(f"bundled data up to date ({what}; {time.perf_counter() - started:.1f} s)")
        return 0

    written = build(args.out, audio=audio)
    total = 0
    for subset, path in written.items():
        table = pq.read_table(path)
        size = path.stat().st_size
        total += size
        langs = collections.Counter(table.column("language").to_pylist())
        print(f"{subset}: {table.num_rows} rows, {size} bytes -> {path}")
        print(f"  languages: {dict(sorted(langs.items()))}")
        if audio is not None:
            n = audio.rows_with_audio(subset, table.num_rows)
            secs = ", ".join(f"{c} {s:.1f} s" for c, s in audio.seconds[subset].items())
            print(f"  audio (espeak-ng {audio.version}) for the first {n} rows: {secs}")
        print("  token_count histogram:")
        print(histogram(table))
    print(f"total {total} bytes in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
