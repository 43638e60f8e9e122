"""Real model tokenizers for the tests, built from the llama-cpp-python 0.3.36 sdist and cached.

The sdist (a package on the registry) carries llama.cpp's vocab-only GGUF files with reference
tokenizations (`.inp` / `.out`) and about 70 chat templates copied from real models. The first
use downloads it with pip, keeps only those files in a cache outside the repository, builds one
tokenizer per vocabulary, proves it against its reference vectors and saves each variant (base,
and instruct with the model's real chat template and special tokens) with `save_pretrained`, so
that later runs load a `tokenizer.json` in well under a second.

The cache is `$LABELLINT_TEST_CACHE`, else `~/.cache/labellint-tests/llama-cpp-python-0.3.36/`.
`$LABELLINT_TEST_SDIST` may name a local copy of the sdist to use instead of downloading it.
Every write goes to a temporary folder renamed into place, so an interrupted run leaves either
a whole entry or none. `RegistryUnreachable` is the one failure a test may turn into a skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PACKAGE = "llama-cpp-python"
VERSION = "0.3.36"
CACHE_ENV = "LABELLINT_TEST_CACHE"
SDIST_ENV = "LABELLINT_TEST_SDIST"
# Bumped whenever the way a tokenizer is built changes, so that a stale build is never reused.
BUILD = "tokenizers-v2"
# between the inputs of a `.inp` file, as llama.cpp's test-tokenizer-0 reads them
SEPARATOR = "\n__ggml_vocab_test__\n"

# The members kept from the sdist, under <top>/vendor/llama.cpp/models/. The name pattern admits
# no folder part and no `..`, so a member can only land where we put it.
_KEEP = re.compile(r"[^/]+/vendor/llama\.cpp/models/"
                   r"((?:ggml-vocab-[A-Za-z0-9_.-]+\.gguf(?:\.inp|\.out)?)"
                   r"|(?:templates/[A-Za-z0-9][A-Za-z0-9_.-]*\.jinja))")
_MAX_MEMBER = 64 << 20  # the largest vocab file is 16 MB; anything far larger is not ours
# What pip prints when it cannot reach the index (urllib3 / requests / socket errors).
_NETWORK = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name "
    r"resolution|Name or service not known|nodename nor servname|Network is unreachable|"
    r"No route to host|Connection refused|ConnectTimeout|ReadTimeout|timed out|ProxyError|"
    r"connection broken by|Max retries exceeded|SSLError|getaddrinfo failed", re.I)


class RegistryUnreachable(RuntimeError):
    """The package registry could not be reached, so the sdist could not be downloaded."""


@dataclass(frozen=True)
class Spec:
    """One tokenizer variant as its model ships it: vocabulary, template and special tokens."""

    name: str              # the cache folder and fixture key, e.g. "llama3-instruct"
    title: str             # what a person calls it, e.g. "Llama 3 Instruct"
    vocab: str             # the GGUF vocabulary, ggml-vocab-<vocab>.gguf
    bos: str | None
    eos: str
    pad: str | None
    add_bos: bool          # whether encoding text prepends BOS (the post-processor)
    template: str | None = None  # templates/<template>, None for a base variant
    eot: str | None = None       # the token the template ends an assistant turn with
    unk: str | None = None


# Special tokens as each model's tokenizer_config.json sets them (Meta, Qwen, Google and
# Microsoft's published files). Llama 2 and GPT-2 never shipped a chat template, so they have a
# base variant only; Phi-3 was released only as Instruct, so its base is the same vocabulary
# without a template.
SPECS: dict[str, Spec] = {s.name: s for s in [
    Spec("llama3", "Llama 3", "llama-bpe", "<|begin_of_text|>", "<|end_of_text|>", None, True),
    Spec("llama3-instruct", "Llama 3 Instruct", "llama-bpe", "<|begin_of_text|>", "<|eot_id|>",
         None, True, "meta-llama-Llama-3.1-8B-Instruct.jinja", "<|eot_id|>"),
    Spec("llama2", "Llama 2", "llama-spm", "<s>", "</s>", None, True, unk="<unk>"),
    Spec("qwen2.5", "Qwen2.5", "qwen2", None, "<|endoftext|>", "<|endoftext|>", False),
    Spec("qwen2.5-instruct", "Qwen2.5 Instruct", "qwen2", None, "<|im_end|>", "<|endoftext|>",
         False, "Qwen-Qwen2.5-7B-Instruct.jinja", "<|im_end|>"),
    Spec("qwen3.5", "Qwen3.5", "qwen35", None, "<|endoftext|>", "<|endoftext|>", False),
    Spec("qwen3.5-instruct", "Qwen3.5 Instruct", "qwen35", None, "<|im_end|>", "<|endoftext|>",
         False, "Qwen3.5-4B.jinja", "<|im_end|>"),
    Spec("gemma4", "Gemma 4", "gemma-4", "<bos>", "<eos>", "<pad>", True, unk="<unk>"),
    Spec("gemma4-instruct", "Gemma 4 Instruct", "gemma-4", "<bos>", "<turn|>", "<pad>", True,
         "google-gemma-4-31B-it.jinja", "<turn|>", unk="<unk>"),
    Spec("phi3.5", "Phi-3.5", "phi-3", "<s>", "<|endoftext|>", "<|endoftext|>", False,
         unk="<unk>"),
    Spec("phi3.5-instruct", "Phi-3.5 Instruct", "phi-3", "<s>", "<|endoftext|>",
         "<|endoftext|>", False, "microsoft-Phi-3.5-mini-instruct.jinja", "<|end|>", unk="<unk>"),
    Spec("gpt2", "GPT-2", "gpt-2", "<|endoftext|>", "<|endoftext|>", None, False),
]}
VOCABS = tuple(dict.fromkeys(s.vocab for s in SPECS.values()))


def cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "labellint-tests" / f"{PACKAGE}-{VERSION}"


def _publish(tmp: Path, final: Path) -> None:
    """Rename a finished temporary folder into place; a concurrent run that got there first wins."""
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _download(into: Path) -> Path:
    """The sdist, from $LABELLINT_TEST_SDIST or downloaded by pip into `into`."""
    local = os.environ.get(SDIST_ENV)
    if local:
        return Path(local)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           f"{PACKAGE}=={VERSION}", "-d", str(into), "--disable-pip-version-check"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise RegistryUnreachable(f"pip download {PACKAGE}=={VERSION} timed out") from None
    output = done.stdout + done.stderr
    if done.returncode != 0:
        if _NETWORK.search(output):
            lines = [ln for ln in output.splitlines() if _NETWORK.search(ln)]
            raise RegistryUnreachable(f"the package registry is unreachable: {lines[-1].strip()}")
        raise RuntimeError(f"pip download {PACKAGE}=={VERSION} failed:\n{output[-2000:]}")
    found = sorted(into.glob("llama_cpp_python-*.tar.gz"))
    if not found:
        raise RuntimeError(f"pip download {PACKAGE}=={VERSION} saved no sdist:\n{output[-2000:]}")
    return found[0]


def extract(sdist: Path, target: Path) -> int:
    """Copy the vocab and template files of the sdist into `target` (a new folder); returns how
    many. Only regular files whose names match `_KEEP` are read; nothing is extracted by name."""
    count = 0
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar:
            match = _KEEP.fullmatch(member.name)
            if not match:
                continue
            if not member.isreg():
                raise RuntimeError(f"{sdist}: {member.name} is not a regular file")
            if member.size > _MAX_MEMBER:
                raise RuntimeError(f"{sdist}: {member.name} claims {member.size} bytes")
            out = target / match.group(1)
            if target.resolve() not in out.resolve().parents:
                raise RuntimeError(f"{sdist}: {member.name} would land outside the cache")
            out.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(member)
            with open(out, "xb") as dst:
                shutil.copyfileobj(src, dst)
            count += 1
    return count


def models_dir(root: Path | None = None) -> Path:
    """The cached `models/` folder (GGUF vocabularies, references, templates), made if absent."""
    root = cache_root() if root is None else root
    final = root / "models"
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as dl:
        sdist = _download(Path(dl))
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".models-"))
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the cache from other users
        try:
            extract(sdist, tmp)
            missing = [f for v in VOCABS for f in (f"ggml-vocab-{v}.gguf",
                                                    f"ggml-vocab-{v}.gguf.inp",
                                                    f"ggml-vocab-{v}.gguf.out")
                       if not (tmp / f).is_file()]
            missing += [f"templates/{s.template}" for s in SPECS.values()
                        if s.template and not (tmp / "templates" / s.template).is_file()]
            if missing:
                raise RuntimeError(f"{sdist}: lacks {', '.join(missing)}")
            _publish(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    # the TemporaryDirectory removed the downloaded sdist (never a $LABELLINT_TEST_SDIST copy)
    return final


def reference(models: Path, vocab: str) -> list[tuple[str, list[int]]]:
    """llama.cpp's reference tokenizations: (text, ids) pairs, encoded without special tokens.

    `.inp` holds the inputs separated by SEPARATOR; `.out` holds one line of ids per input."""
    raw = (models / f"ggml-vocab-{vocab}.gguf.inp").read_text(encoding="utf-8")
    texts, pos = [], 0
    while pos < len(raw):  # as test-tokenizer-0.cpp splits: a trailing separator ends the list
        cut = raw.find(SEPARATOR, pos)
        if cut < 0:
            texts.append(raw[pos:])
            break
        texts.append(raw[pos:cut])
        pos = cut + len(SEPARATOR)
    lines = (models / f"ggml-vocab-{vocab}.gguf.out").read_text(encoding="utf-8").splitlines()
    if len(lines) != len(texts):
        raise RuntimeError(f"{vocab}: {len(texts)} reference inputs but {len(lines)} outputs")
    return [(t, [int(x) for x in line.split()]) for t, line in zip(texts, lines)]


def mismatches(tok, ref: list[tuple[str, list[int]]]) -> list[tuple[str, list[int], list[int]]]:
    """The reference cases a tokenizer does not reproduce: (text, expected, got)."""
    bad = []
    for text, ids in ref:
        got = tok.encode(text, add_special_tokens=False)
        if got != ids:
            bad.append((text, ids, got))
    return bad


@lru_cache(maxsize=None)
def _token_count(path: Path) -> int:
    """How many tokens the GGUF file holds (reading it takes seconds: done once)."""
    from gguf import GGUFReader

    return len(GGUFReader(path).fields["tokenizer.ggml.tokens"].data)


def _gguf_strings(reader, key: str) -> list[str]:
    field = reader.fields[key]
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


def _gemma4_backend(path: Path):
    """Gemma 4's tokenizer, from the GGUF's vocab and merges (transformers cannot read this
    file: its config parser rejects the per-layer head counts). llama.cpp's `gemma4` pre-type:
    spaces become U+2581, runs of newlines are split off, BPE over raw UTF-8 with byte fallback."""
    from gguf import GGUFReader
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers

    reader = GGUFReader(path)
    tokens = _gguf_strings(reader, "tokenizer.ggml.tokens")
    field = reader.fields["tokenizer.ggml.token_type"]
    types = [int(field.parts[i][0]) for i in field.data]
    merges = []
    for m in _gguf_strings(reader, "tokenizer.ggml.merges"):
        cut = m.find(" ", 1)  # as llama.cpp splits a merge: a token may start with a space
        merges.append((m[:cut], m[cut + 1:]))
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                               byte_fallback=True, fuse_unk=True, unk_token="<unk>"))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("\n+"), behavior="isolated")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                     decoders.Fuse()])
    # GGUF token types: 3 control (special), 4 user-defined (always matched, not special)
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                            for i, t in enumerate(types) if t == 3])
    tok.add_tokens([AddedToken(tokens[i], special=False, normalized=False)
                    for i, t in enumerate(types) if t == 4])
    return tok


def _backend(models: Path, vocab: str):
    """The `tokenizers` object for one vocabulary, restored where the GGUF conversion loses what
    the model's own tokenizer.json has, and without any post-processor (added per variant)."""
    from tokenizers import normalizers

    if vocab == "gemma-4":
        return _gemma4_backend(models / f"ggml-vocab-{vocab}.gguf")
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    path = models / f"ggml-vocab-{vocab}.gguf"
    tok = AutoTokenizer.from_pretrained(str(models), gguf_file=path.name)
    size = _token_count(path)
    spec = json.loads(tok.backend_tokenizer.to_str())
    # The conversion adds its class's default special tokens when the file lacks them (GPT-2's
    # unk `<|endoftext|>` becomes id 128256 of Llama 3): the model has no such token.
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["id"] < size]
    backend = Tokenizer.from_str(json.dumps(spec))
    if vocab == "llama-bpe":
        # Llama 3's tokenizer.json sets ignore_merges: a pre-token that is itself in the
        # vocabulary is one token (" Việt"), never re-merged from bytes.
        backend.model.ignore_merges = True
    if vocab == "llama-spm":
        # Llama 2's tokenizer.json: a normalizer that prepends U+2581 and replaces every space,
        # no pre-tokenizer (the conversion's Metaspace drops the leading space of " Hello").
        backend.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"),
                                                   normalizers.Replace(" ", "\u2581")])
        backend.pre_tokenizer = None
    return backend


def _variant(backend, spec: Spec, models: Path):
    """A PreTrainedTokenizerFast for one variant: post-processor, special tokens, template."""
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_str(backend.to_str())
    if spec.add_bos:
        bos_id = tok.token_to_id(spec.bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{spec.bos} $A", pair=f"{spec.bos} $A {spec.bos} $B",
            special_tokens=[(spec.bos, bos_id)])
    else:
        tok.post_processor = None
    for t in (spec.bos, spec.eos, spec.pad, spec.eot, spec.unk):
        if t is not None and tok.token_to_id(t) is None:
            raise RuntimeError(f"{spec.name}: {t!r} is not in the {spec.vocab} vocabulary")
    template = None
    if spec.template:
        template = (models / "templates" / spec.template).read_text(encoding="utf-8")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=spec.bos, eos_token=spec.eos, pad_token=spec.pad,
        unk_token=spec.unk, chat_template=template, padding_side="right",
        clean_up_tokenization_spaces=False)


def tokenizer_dir(name: str, root: Path | None = None) -> Path:
    """The saved folder of one variant (what `--tokenizer` is given), built if absent."""
    spec = SPECS[name]
    root = cache_root() if root is None else root
    final = root / BUILD / name
    if (final / "tokenizer.json").is_file():
        return final
    build_vocab(spec.vocab, root)
    return final


def build_vocab(vocab: str, root: Path | None = None) -> None:
    """Build, prove and save every variant of one vocabulary that is not cached yet."""
    root = cache_root() if root is None else root
    todo = [s for s in SPECS.values()
            if s.vocab == vocab and not (root / BUILD / s.name / "tokenizer.json").is_file()]
    if not todo:
        return
    models = models_dir(root)
    ref = reference(models, vocab)
    backend = _backend(models, vocab)
    size = backend.get_vocab_size(with_added_tokens=True)
    want = _token_count(models / f"ggml-vocab-{vocab}.gguf")
    if size != want:
        raise RuntimeError(f"{vocab}: the tokenizer has {size} tokens, the GGUF file {want}")
    (root / BUILD).mkdir(parents=True, exist_ok=True)
    for spec in todo:
        tok = _variant(backend, spec, models)
        bad = mismatches(tok, ref)
        if bad:
            text, want, got = bad[0]
            raise RuntimeError(f"{spec.name}: {len(bad)} of {len(ref)} reference tokenizations "
                               f"differ, e.g. {text!r}: expected {want}, got {got}")
        tmp = Path(tempfile.mkdtemp(dir=root / BUILD, prefix=f".{spec.name}-"))
        os.chmod(tmp, 0o755)
        try:
            tok.save_pretrained(str(tmp))
            _publish(tmp, root / BUILD / spec.name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def load(name: str, root: Path | None = None):
    """One variant's tokenizer, loaded from its saved folder as a user's script would."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir(name, root)))


@dataclass(frozen=True)
class RealTokenizer:
    spec: Spec
    tokenizer: object
    path: Path  # the saved folder

    @property
    def name(self) -> str:
        return self.spec.name


def load_all(root: Path | None = None) -> dict[str, RealTokenizer]:
    """Every variant, keyed by name (raises RegistryUnreachable when the sdist cannot be had)."""
    return {n: RealTokenizer(s, load(n, root), tokenizer_dir(n, root)) for n, s in SPECS.items()}
