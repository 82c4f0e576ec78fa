"""An open training corpus: Debian game music, rendered MIDI packages and music21 scores, in 30 s excerpts.

The study's training data (Million Song Dataset previews with Last.fm, Echo Nest,
musiXmatch and CDR targets) cannot be had here, so the project's own models are
trained on real music that any Debian machine can install. Each step is
resumable and writes into one corpus folder:

1. Track tables, the audio staying where the packages put it:
   :func:`build_soundtrack_corpus` (:mod:`.soundtracks`, eight soundtrack packages),
   :func:`fetch_packages` and :func:`build_debian_corpus` (:mod:`.debian`, the
   recorded and tracker music of the game-data packages of the package list shipped
   with the code), each track with its package, composer, duration and licence.
2. Renders: :func:`build_midi_corpus` (:mod:`.midi`, the MIDI pieces of Debian
   packages, their own programs, one of three soundfonts per piece) and
   :func:`build_music21_corpus` (:mod:`.renders`, five styles of the music21 corpus,
   one General MIDI program, tempo and soundfont per piece drawn independently of
   the style).
3. :func:`build_manifest` (:mod:`.splits`) splits the tracks into train / valid /
   test by track or work, stratified by package or style, then
   :func:`cut_excerpts` (:mod:`.excerpts`) cuts each into 30 s excerpts that keep
   their track's split.
4. :func:`compute_audio_descriptors` (:mod:`.descriptors`) computes
   algorithm-derived descriptors of every excerpt and :func:`compute_opencorpus_targets`
   (:mod:`.sources`) turns them, and the composer labels, into the learning targets
   of :mod:`mtlmusic_training.targets`.

:func:`build_open_corpus` (:mod:`.build`) runs steps 1 (soundtracks), 2 (music21) to 4;
:func:`compute_timbre_targets` (:mod:`.timbre`) adds the ``timbre`` source, and
:mod:`.heldout` (not imported here: it loads the evaluation stack) scores models
on the held-out part and writes the default model's card. Getting the
soundtrack packages takes no installation of the games (about 960 minutes of
music)::

    apt-get update
    mkdir -p ~/open-music && cd ~/open-music
    apt-get download warzone2100-music ufoai-music planetblupi-music-ogg wesnoth-1.16-music \\
        nexuiz-music singularity-music hyperrogue-music asc-music
    mkdir -p x && for f in *.deb; do dpkg -x "$f" "x/${f%%_*}"; done
    find x -name '*.pk3' -execdir unzip -oq {} \\;

Rendering needs ``apt-get install fluidsynth fluid-soundfont-gm`` and
``pip install music21 mido``.

Learning sources (see :data:`OPEN_SOURCES` and :func:`compute_opencorpus_targets`)
    ``self`` (no stored targets), ``bpm`` (beat-tracked tempo, the study's Gaussian
    mixture), ``onset`` (onset rate, Gaussian mixture), ``chroma`` (pLSA of a
    histogram of local keys), ``tempogram`` (pLSA of a tempogram histogram),
    ``composer`` (label distribution of the Wesnoth composers) and ``timbre`` (pLSA
    of bags of MFCC words). ``soundtrack`` and ``style`` are the held-out evaluation
    labels and are not training sources unless asked for explicitly.

Examples
--------
>>> from mtlmusic_training.corpus import STYLES, split_tracks
>>> STYLES
('bach', 'palestrina', 'monteverdi', 'trecento', 'quartet')
>>> import pandas as pd
>>> table = pd.DataFrame({"track_id": list("abcdefghij"), "group": list("abcdefghij"), "stratum": ["x"] * 10})
>>> split_tracks(table, seed=0).value_counts().to_dict()
{'train': 7, 'test': 2, 'valid': 1}
"""

from ._io import METADATA_COLUMNS
from .build import build_open_corpus
from .debian import (DEBIAN_KINDS, PACKAGE_LIST, RESERVED_PACKAGES, build_debian_corpus, excerpt_windows,
                     fetch_packages, music_folders, read_package_list, unpack_archives)
from .descriptors import (ANALYSIS_SECONDS, DESCRIPTOR_VERSION, HOP_LENGTH, KEY_NAMES, KEY_WINDOW_SECONDS, TEMPO_EDGES,
                          Descriptors, analysis_audio, compute_audio_descriptors, describe_audio, load_descriptors)
from .excerpts import EXCERPT_COLUMNS, MIN_EXCERPT_SECONDS, cut_excerpts
from .midi import build_midi_corpus, extract_wad_music, mus_to_midi
from .renders import (BPM_RANGE, DEFAULT_PROGRAMS, DEFAULT_SOUNDFONT, GM_SOUNDFONTS, MUSIC21_LICENCE, STYLES,
                      build_music21_corpus, music21_candidates, render_midi, render_score)
from .soundtracks import SOUNDTRACK_PACKAGES, build_soundtrack_corpus, licence_for
from .sources import (COMPOSER_SOUNDTRACKS, DEFAULT_TARGET_SOURCES, LABEL_SMOOTHING, LABEL_SOURCES, OPEN_SOURCES,
                      compute_opencorpus_targets, label_targets, register_opencorpus_sources)
from .splits import CORPUS_FRACTIONS, DEFAULT_FRACTIONS, TRACK_TABLES, build_manifest, corpus_summary, split_tracks
from .timbre import TIMBRE_TOPICS, TIMBRE_WORDS, compute_timbre_targets

__all__ = [
    "ANALYSIS_SECONDS", "BPM_RANGE", "COMPOSER_SOUNDTRACKS", "CORPUS_FRACTIONS", "DEBIAN_KINDS", "DEFAULT_FRACTIONS",
    "DEFAULT_PROGRAMS",
    "DEFAULT_SOUNDFONT", "DEFAULT_TARGET_SOURCES", "DESCRIPTOR_VERSION", "EXCERPT_COLUMNS", "GM_SOUNDFONTS",
    "HOP_LENGTH", "KEY_NAMES", "KEY_WINDOW_SECONDS", "LABEL_SMOOTHING", "LABEL_SOURCES", "METADATA_COLUMNS",
    "MIN_EXCERPT_SECONDS", "MUSIC21_LICENCE", "OPEN_SOURCES", "PACKAGE_LIST", "RESERVED_PACKAGES",
    "SOUNDTRACK_PACKAGES", "STYLES", "TEMPO_EDGES", "TIMBRE_TOPICS", "TIMBRE_WORDS", "TRACK_TABLES", "Descriptors",
    "analysis_audio", "build_debian_corpus", "build_manifest", "build_midi_corpus", "build_music21_corpus",
    "build_open_corpus", "build_soundtrack_corpus", "compute_audio_descriptors", "compute_opencorpus_targets",
    "compute_timbre_targets", "corpus_summary", "cut_excerpts", "describe_audio", "excerpt_windows",
    "extract_wad_music", "fetch_packages", "label_targets", "licence_for", "load_descriptors", "mus_to_midi",
    "music21_candidates", "music_folders", "read_package_list", "register_opencorpus_sources", "render_midi",
    "render_score", "split_tracks", "unpack_archives",
]
