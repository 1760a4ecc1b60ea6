"""The synthetic label pipeline of open-vocabulary multi-label, appendix I (Fig. 7): more labels for a video dataset
from foundation models, in four pluggable steps.

1. **Caption generation** -- a :class:`~openvocab.labelling.captioners.Captioner` gives each video a few captions
   (a file of captions a user already has, or an image-to-text model on sampled frames).
2. **Concept extraction** -- an LLM is prompted with the supplement's listing (three in-context examples, then the
   video's captions, "Verbs Found:") and its numbered list is parsed (:func:`extraction_prompt`,
   :func:`extract_concepts`). ``generate`` is any ``list[prompt] -> list[text]`` function (a T5 / Flan-T5 through
   :mod:`openvocab.text.llm_attributes`, or any other LLM a user wraps).
3. **Vocabulary expansion** -- every concept found in the dataset is embedded by a text encoder (CLIP's, as in the
   paper, or any :class:`~openvocab.text.label_encoders.LabelEncoder`), k-means (scikit-learn) groups
   near-duplicates, and each group is replaced by its most frequent concept (:func:`deduplicate`, Table 13).
4. **Label assignment** -- each video gets the vocabulary labels whose embedding of ``"a video of {label}"`` is
   closest to one of its captions' embeddings (:func:`assign_labels`).

:func:`synthesize` runs the four steps; ``openvocab labels synthesize`` is its command line.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from openvocab.errors import InputError

log = logging.getLogger(__name__)

#: ``texts -> (N, D)`` embeddings (normalised or not; they are normalised here).
Embed = Callable[[Sequence[str]], torch.Tensor]
#: ``prompts -> generated texts`` (one LLM call per prompt).
Generate = Callable[[Sequence[str]], Sequence[str]]

#: The instruction of the supplement's listing (appendix I), per kind of concept. ``actions`` is the paper's; the
#: ``objects`` instruction is ours, in the same form, for the object labels the pipeline also extracts (Fig. 7a).
INSTRUCTIONS = {
    "actions": "Following is the description of a video. Output a numbered list of verbs representing visual actions performed in the video. "
    "Do not add any explanation.",
    "objects": "Following is the description of a video. Output a numbered list of nouns representing visible objects, animals or scenes in "
    "the video. Do not add any explanation.",
}
#: The heading of the answer in the listing.
ANSWER_HEADINGS = {"actions": "Verbs Found:", "objects": "Objects Found:"}

#: The three in-context examples of the listing: captions, and the answer per kind (``actions`` as printed in the paper).
IN_CONTEXT_EXAMPLES: tuple[tuple[tuple[str, ...], dict[str, tuple[str, ...]]], ...] = (
    (
        (
            "A group of people riding motorcycles at night.",
            "A motorcycle is lit up with blue lights.",
            "A person is riding a bike at night.",
            "A motorcycle parked on the street at night.",
            "A group of people are gathered in a dimly lit room.",
            "A motorcycle parked in a dark room.",
            "A motorcycle is parked in a dark room.",
            "A person is riding a bike at night.",
        ),
        {"actions": ("riding motorcycle", "riding bike"), "objects": ("motorcycle", "bike", "street", "dark room")},
    ),
    (
        (
            "A man is performing on stage with a band.",
            "A group of men are performing on a stage.",
            "A man with a microphone is performing on stage.",
            "A group of young men performing on stage.",
            "A man is singing on a stage with a band.",
            "A man is playing a guitar on a stage.",
            "A man and a woman are performing on stage.",
            "A dark room with a bright light shining on it.",
        ),
        {"actions": ("performing on stage", "singing on stage", "playing guitar"), "objects": ("stage", "band", "microphone", "guitar")},
    ),
    (
        (
            "A person is putting lotion on another person's hand.",
            "A person is putting nail polish on another person's nails.",
            "A person is putting nail polish on their nails.",
            "A person is holding a ball point pen.",
            "A person is writing on a piece of paper.",
            "A person is holding another person's hand.",
            "A person is putting a ring on another person's finger.",
            "A black screen with a white frame.",
        ),
        {"actions": ("putting lotion", "putting nail polish", "writing", "putting ring"), "objects": ("lotion", "nail polish", "pen", "paper", "ring")},
    ),
)

#: Label assignment prompt (appendix I: "standard CLIP prompt template ... to reduce domain shift").
ASSIGNMENT_TEMPLATE = "a video of {}"


def _numbered(items: Sequence[str]) -> str:
    return "\n".join(f"{i}. {item}" for i, item in enumerate(items, start=1))


def extraction_prompt(captions: Sequence[str], *, kind: str = "actions", max_captions: int = 8) -> str:
    """The supplement's listing with ``captions`` as "Video 4" (at most ``max_captions``, as in the examples)."""
    if kind not in INSTRUCTIONS:
        raise InputError(f"unknown concept kind '{kind}' ({', '.join(INSTRUCTIONS)})")
    blocks = []
    for number, (example, answers) in enumerate(IN_CONTEXT_EXAMPLES, start=1):
        blocks.append(f"{INSTRUCTIONS[kind]}\n\nVideo {number} description:\n\n{_numbered(example)}\n\n{ANSWER_HEADINGS[kind]}\n\n{_numbered(answers[kind])}")
    shown = [" ".join(c.split()) for c in captions if c and c.strip()][:max_captions]
    blocks.append(f"{INSTRUCTIONS[kind]}\n\nVideo {len(IN_CONTEXT_EXAMPLES) + 1} description:\n\n{_numbered(shown)}\n\n{ANSWER_HEADINGS[kind]}\n\n")
    return "\n\n".join(blocks)


def normalise_concept(text: str) -> str:
    """Lower case, single spaces, no surrounding punctuation or quotes."""
    return " ".join(text.lower().split()).strip(" .,;:!?\"'`*-")


def extract_concepts(
    captions: Mapping[str, Sequence[str]], generate: Generate, *, kinds: Sequence[str] = ("actions",), batch_size: int = 8
) -> dict[str, list[str]]:
    """Step 2: the concepts an LLM finds in each video's captions (``{video: [concept, ...]}``, first-seen order,
    without repeats). A video whose LLM answer parses to nothing gets no concepts (logged once at the end)."""
    from openvocab.text.llm_attributes import parse_attribute_list

    jobs = [(video, kind) for video, caps in captions.items() if any(c.strip() for c in caps) for kind in kinds]
    found: dict[str, list[str]] = {video: [] for video in captions}
    empty = 0
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        answers = list(generate([extraction_prompt(captions[video], kind=kind) for video, kind in chunk]))
        if len(answers) != len(chunk):
            raise InputError(f"the LLM returned {len(answers)} answers for {len(chunk)} prompts")
        for (video, _), answer in zip(chunk, answers):
            items = [normalise_concept(item) for item in parse_attribute_list(answer)]
            items = [item for item in items if item]
            if not items:
                empty += 1
            for item in items:
                if item not in found[video]:
                    found[video].append(item)
    if empty:
        log.warning("the LLM found no concept in %d of %d prompts", empty, len(jobs))
    return found


def _normalised(embed: Embed, texts: Sequence[str]) -> np.ndarray:
    rows = embed(list(texts)).detach().float().cpu()
    return torch.nn.functional.normalize(rows, dim=-1).numpy()


@dataclass
class Vocabulary:
    """Step 3's result: the de-duplicated labels (most frequent first), each concept's label, the clusters."""

    labels: list[str]
    label_of: dict[str, str]
    clusters: list[list[str]] = field(default_factory=list)  # per label (same order): its concepts, most frequent first
    counts: dict[str, int] = field(default_factory=dict)  # concept -> number of videos it was found in


def deduplicate(concepts: Mapping[str, Sequence[str]], embed: Embed, *, clusters: int | None = None, min_videos: int = 1, seed: int = 0) -> Vocabulary:
    """Step 3 (appendix I, Table 13): k-means over the text embeddings of every distinct concept; each cluster is
    replaced by its most frequent concept (ties: the shorter, then alphabetical). ``clusters`` defaults to half the
    number of distinct concepts (at least 1); concepts found in fewer than ``min_videos`` videos are dropped first."""
    from sklearn.cluster import KMeans

    counts = Counter(c for found in concepts.values() for c in dict.fromkeys(found))
    distinct = sorted((c for c, n in counts.items() if n >= min_videos), key=lambda c: (-counts[c], len(c), c))
    if not distinct:
        raise InputError("no concept was found in any video (check the captions and the LLM)")
    k = max(1, len(distinct) // 2) if clusters is None else int(clusters)
    if k < 1:
        raise InputError(f"--clusters must be >= 1, got {k}")
    k = min(k, len(distinct))
    assignment = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(_normalised(embed, distinct)) if k > 1 else np.zeros(len(distinct), int)
    groups: dict[int, list[str]] = {}
    for concept, group in zip(distinct, assignment.tolist()):
        groups.setdefault(group, []).append(concept)  # distinct is sorted by frequency: the first is the group's label
    ordered = sorted(groups.values(), key=lambda members: (-counts[members[0]], members[0]))
    labels = [members[0] for members in ordered]
    label_of = {concept: members[0] for members in ordered for concept in members}
    return Vocabulary(labels=labels, label_of=label_of, clusters=ordered, counts={c: counts[c] for c in distinct})


def assign_labels(
    captions: Mapping[str, Sequence[str]], labels: Sequence[str], embed: Embed, *, min_similarity: float = 0.25, max_labels: int = 10
) -> dict[str, list[str]]:
    """Step 4: per video, the labels whose ``"a video of {label}"`` embedding has cosine ``>= min_similarity`` with
    at least one of its captions' embeddings, best first, at most ``max_labels``."""
    if not labels:
        return {video: [] for video in captions}
    label_rows = _normalised(embed, [ASSIGNMENT_TEMPLATE.format(label) for label in labels])
    out: dict[str, list[str]] = {}
    for video, caps in captions.items():
        caps = [c for c in caps if c and c.strip()]
        if not caps:
            out[video] = []
            continue
        best = (_normalised(embed, caps) @ label_rows.T).max(axis=0)  # (L,): each label's best caption
        order = [int(j) for j in np.argsort(-best, kind="stable") if best[j] >= min_similarity][:max_labels]
        out[video] = [labels[j] for j in order]
    return out


@dataclass
class SynthesisResult:
    """Per video: its captions, the concepts the LLM found and the labels assigned; the vocabulary."""

    captions: dict[str, list[str]]
    concepts: dict[str, list[str]]
    labels: dict[str, list[str]]
    vocabulary: Vocabulary
    failed: dict[str, str] = field(default_factory=dict)  # video -> why it has no captions


def synthesize(
    videos: Sequence[str],
    *,
    caption: Callable[[str], Sequence[str]],
    generate: Generate,
    embed: Embed,
    kinds: Sequence[str] = ("actions",),
    clusters: int | None = None,
    min_videos: int = 1,
    min_similarity: float = 0.25,
    max_labels: int = 10,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> SynthesisResult:
    """The four steps on ``videos`` (module docstring). A video the captioner fails on is recorded in ``failed``
    (an :class:`~openvocab.errors.OpenVocabError`'s message) and the run goes on."""
    from openvocab.errors import OpenVocabError

    captions: dict[str, list[str]] = {}
    failed: dict[str, str] = {}
    for i, video in enumerate(videos):
        try:
            captions[video] = [" ".join(c.split()) for c in caption(video) if c and c.strip()]
        except OpenVocabError as exc:
            failed[video] = str(exc)
        if progress is not None:
            progress(i + 1, len(videos))
    if not any(captions.values()):
        raise InputError(f"no captions for any of the {len(videos)} videos" + (f" (e.g. {next(iter(failed.values()))})" if failed else ""))
    concepts = extract_concepts(captions, generate, kinds=kinds)
    vocabulary = deduplicate(concepts, embed, clusters=clusters, min_videos=min_videos, seed=seed)
    labels = assign_labels(captions, vocabulary.labels, embed, min_similarity=min_similarity, max_labels=max_labels)
    return SynthesisResult(captions=captions, concepts=concepts, labels=labels, vocabulary=vocabulary, failed=failed)
