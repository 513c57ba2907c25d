"""A keyword-spotting CNN trained here on words spoken by espeak-ng, deterministically, on first use.

No keyword-spotting network whose weights ship inside a registry package could be rebuilt here
(the wake-word packages ship compiled libraries or download their models), so, as for the digits
net, a small one is trained from a fixed recipe and cached under <cache>/zoo/word-<hash>.pt with
its measured accuracies beside it (word-<hash>.json). The speech comes from espeak-ng (Debian
package), synthesised in child processes so that the library's carried-over state never depends
on what this process spoke before: the same recipe gives the same sounds and the same weights.

Classes: "silence" (noise, hum or nothing), "unknown" (other words and made-up syllables) and ten
command words. Training voices are espeak-ng's English accents with most of its voice variants;
some variants and one accent are never heard in training and give the held-out-voice accuracy.
Augmentation: a random place in the 1 s window, loudness, background noise and a synthetic room.
Input: (N, 16000) waveforms at 16 kHz; output: (N, 12) class probabilities (softmax).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading

import numpy as np
import torch
from torch import nn

from closedloop.zoo import UnitSpec, ZooModel, cache_dir, channel_units, load_state_dict, train_classifier

SAMPLE_RATE = 16000
SAMPLES = 16000
WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
CLASSES = ("silence", "unknown", *WORDS)
UNKNOWN_WORDS = ("bed", "bird", "cat", "dog", "happy", "house", "tree", "wow", "zero", "one", "two", "three",
                 "four", "five", "six", "seven", "eight", "nine", "yet", "yeah", "less", "guess", "lift", "light",
                 "top", "cup", "dawn", "oh", "of", "now")
ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc")
VARIANTS = ("", "m1", "m2", "m3", "m5", "m6", "m7", "f1", "f2", "f3", "f5", "klatt", "klatt2", "klatt4", "croak",
            "whisper", "Andy", "Annie", "belinda", "benjamin", "david", "edward", "linda", "max", "michel", "paul")
HELD_OUT_ACCENTS = ("en-029",)
HELD_OUT_VARIANTS = ("m4", "f4", "klatt3", "grandma", "john", "steph")
N_MELS, N_FFT, HOP = 40, 512, 256
RECIPE = {
    "version": 1,
    "classes": CLASSES,
    "unknown_words": UNKNOWN_WORDS,
    "accents": ACCENTS, "variants": VARIANTS,
    "held_out": {"accents": HELD_OUT_ACCENTS, "variants": HELD_OUT_VARIANTS},
    "per_word": 170, "per_unknown_word": 14, "pseudo_words": 120, "held_out_per_word": 30,
    "speed": [110, 260], "pitch": [10, 90], "pitch_range": [10, 90],
    "test_fraction": 0.15,
    "features": {"n_mels": N_MELS, "n_fft": N_FFT, "hop": HOP, "f_min": 60, "f_max": 7600},
    "architecture": "logmel(40) bn, conv1d k5 (40->64) bn relu pool2, (64->64) bn relu pool2, (64->96) bn relu, "
                    "mean over time, fc(96->64) relu, fc(64->12)",
    "augment": {"loudness_db": [-14, 6], "noise_probability": 0.7, "snr_db": [5, 40],
                "room_probability": 0.5, "rt60": [0.05, 0.5]},
    "silence_fraction": 0.08,
    "seed": 0,
    "optimizer": {"name": "adam", "lr": 5e-3, "weight_decay": 1e-4},
    "epochs": 20,
    "batch_size": 96,
}
_train_lock = threading.Lock()


def mel_filterbank(n_mels: int, n_fft: int, f_min: float, f_max: float) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters evenly spaced on the mel scale (HTK formula)."""
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    edges_hz = 700 * (10 ** (np.linspace(mel(f_min), mel(f_max), n_mels + 2) / 2595) - 1)
    bins = np.fft.rfftfreq(n_fft, 1 / SAMPLE_RATE)
    low, centre, high = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising, falling = (bins - low) / (centre - low), (high - bins) / (high - centre)
    return np.maximum(0, np.minimum(rising, falling))


class WordNet(nn.Module):
    def __init__(self):
        super().__init__()
        features = RECIPE["features"]
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True))
        self.register_buffer("mel", torch.as_tensor(
            mel_filterbank(N_MELS, N_FFT, features["f_min"], features["f_max"]), dtype=torch.float32))
        self.norm = nn.BatchNorm1d(N_MELS)
        self.conv1 = nn.Conv1d(N_MELS, 64, 5, padding=2)
        self.norm1 = nn.BatchNorm1d(64)
        self.conv2 = nn.Conv1d(64, 64, 5, padding=2)
        self.norm2 = nn.BatchNorm1d(64)
        self.conv3 = nn.Conv1d(64, 96, 5, padding=2)
        self.norm3 = nn.BatchNorm1d(96)
        self.fc1 = nn.Linear(96, 64)
        self.fc2 = nn.Linear(64, len(CLASSES))
        self.logits = nn.Identity()  # (N, 12): a hook point for logit units

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """(N, samples) -> (N, mels, frames) log-mel power."""
        if wave.ndim != 2:
            raise ValueError(f"word model expects waveforms (N, samples), got shape {tuple(wave.shape)}")
        spectrum = torch.stft(wave, N_FFT, HOP, window=self.window, center=True, return_complex=True)
        power = spectrum.real ** 2 + spectrum.imag ** 2
        return torch.log(self.mel @ power + 1e-6)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.features(wave))
        x = nn.functional.max_pool1d(torch.relu(self.norm1(self.conv1(x))), 2)
        x = nn.functional.max_pool1d(torch.relu(self.norm2(self.conv2(x))), 2)
        x = torch.relu(self.norm3(self.conv3(x))).mean(dim=2)  # (N, 96): mean over time
        x = torch.relu(self.fc1(x))
        return torch.softmax(self.logits(self.fc2(x)), dim=1)


# --- the data: espeak-ng words ---------------------------------------------------------------------

def pseudo_words(rng: np.random.Generator, n: int) -> list[str]:
    """Made-up consonant-vowel-consonant syllables ("unknown" class), none a command word."""
    onsets = ["b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "sh", "ch", "th",
              "bl", "gr", "st", "tr"]
    vowels = ["a", "e", "i", "o", "u", "ee", "oo", "ai", "oa"]
    codas = ["", "b", "d", "g", "k", "l", "m", "n", "p", "t", "sk", "mp", "nd", "ft"]
    found: list[str] = []
    while len(found) < n:
        word = rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
        if word not in WORDS and word not in found:
            found.append(word)
    return found


def utterances(rng: np.random.Generator) -> list[dict]:
    """Every utterance to synthesise: text, voice, speed, pitch, range, label and split."""
    r = RECIPE
    train_voices = [a + (f"+{v}" if v else "") for a in ACCENTS for v in VARIANTS]
    held_voices = ([a + f"+{v}" for a in ACCENTS + HELD_OUT_ACCENTS for v in HELD_OUT_VARIANTS]
                   + [a + (f"+{v}" if v else "") for a in HELD_OUT_ACCENTS for v in VARIANTS])

    def item(text, label, voices, split):
        return {"text": text, "label": label, "split": split, "voice": str(rng.choice(voices)),
                "speed": int(rng.integers(*r["speed"])), "pitch": int(rng.integers(*r["pitch"])),
                "range": int(rng.integers(*r["pitch_range"]))}

    items = []
    for word in WORDS:
        items += [item(word, CLASSES.index(word), train_voices, "train") for _ in range(r["per_word"])]
        items += [item(word, CLASSES.index(word), held_voices, "voices") for _ in range(r["held_out_per_word"])]
    unknown = CLASSES.index("unknown")
    for word in UNKNOWN_WORDS:
        items += [item(word, unknown, train_voices, "train") for _ in range(r["per_unknown_word"])]
    items += [item(word, unknown, train_voices, "train") for word in pseudo_words(rng, r["pseudo_words"])]
    test = rng.random(len(items)) < r["test_fraction"]
    for entry, held in zip(items, test):
        if held and entry["split"] == "train":
            entry["split"] = "test"
    return items


def synthesise(items: list[dict], workers: int = 2) -> list[np.ndarray]:
    """Speak every item, in `workers` fresh child processes each taking a fixed share in order."""
    shares = np.array_split(np.arange(len(items)), workers)
    with tempfile.TemporaryDirectory() as folder:
        jobs = []
        for k, share in enumerate(shares):
            request = os.path.join(folder, f"request-{k}.json")
            with open(request, "w") as handle:
                json.dump([items[i] for i in share], handle)
            output = os.path.join(folder, f"speech-{k}.npz")
            jobs.append((output, subprocess.Popen([sys.executable, "-m", "closedloop.zoo.word", request, output],
                                                  stderr=subprocess.PIPE, text=True)))
        waves: list[np.ndarray] = []
        for output, process in jobs:
            _, error = process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"espeak-ng synthesis failed: {error.strip().splitlines()[-1] if error else ''}")
            with np.load(output, allow_pickle=False) as data:
                flat, lengths = data["samples"], data["lengths"]
            waves += np.split(flat, np.cumsum(lengths)[:-1])
    return waves


def _speak_request(request: str, output: str) -> None:
    from closedloop.zoo import espeak

    with open(request) as handle:
        items = json.load(handle)
    waves = [espeak.speak(i["text"], i["voice"], i["speed"], i["pitch"], i["range"]).astype(np.float32)
             for i in items]
    np.savez(output, samples=np.concatenate(waves), lengths=np.array([len(w) for w in waves]))


def dataset() -> dict[str, tuple[list[np.ndarray], np.ndarray]]:
    """{"train" | "test" | "voices": (waveforms, labels)}; silence examples are made at train time."""
    rng = np.random.default_rng(np.random.SeedSequence([RECIPE["seed"], 1]))
    items = utterances(rng)
    waves = synthesise(items)
    split = {}
    for name in ("train", "test", "voices"):
        chosen = [i for i, entry in enumerate(items) if entry["split"] == name]
        split[name] = ([trim(waves[i]) for i in chosen], np.array([items[i]["label"] for i in chosen]))
    return split


def trim(wave: np.ndarray, level: float = 1e-3) -> np.ndarray:
    """The part between the first and last sample above `level` (espeak-ng pads with silence)."""
    loud = np.nonzero(np.abs(wave) > level)[0]
    wave = wave[loud[0]:loud[-1] + 1] if len(loud) else wave[:1]
    return wave[:SAMPLES]


# --- augmentation (torch, from one generator) ---------------------------------------------------------

def coloured_noise(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, SAMPLES) unit-RMS noise, each white, pink or brown at random."""
    white = torch.randn(n, SAMPLES, generator=generator)
    exponent = torch.randint(0, 3, (n, 1), generator=generator).float()  # power 1/f^0, 1/f^1, 1/f^2
    frequency = torch.fft.rfftfreq(SAMPLES, 1 / SAMPLE_RATE).clamp_min(20.0)
    noise = torch.fft.irfft(torch.fft.rfft(white) * frequency ** (-exponent / 2), SAMPLES)
    return noise / noise.pow(2).mean(dim=1, keepdim=True).sqrt()


def silence(n: int, generator: torch.Generator) -> torch.Tensor:
    """Background without a word: noise, a hum with harmonics, or nothing, at random levels."""
    noise = coloured_noise(n, generator)
    t = torch.arange(SAMPLES) / SAMPLE_RATE
    f0 = 40 + 400 * torch.rand(n, 1, generator=generator)
    hum = sum(torch.sin(2 * torch.pi * k * f0 * t) / k for k in range(1, 6))
    kind = torch.randint(0, 4, (n, 1), generator=generator)
    waves = torch.where(kind == 0, hum / hum.pow(2).mean(dim=1, keepdim=True).sqrt(), noise)
    waves = torch.where(kind == 3, waves * 1e-3, waves)
    level = 10 ** (torch.empty(n, 1).uniform_(-50, -10, generator=generator) / 20)
    return waves * level


def placed(words: list[np.ndarray], generator: torch.Generator) -> torch.Tensor:
    """Each word at a random position of a 1 s window, at RMS 0.1 times a random gain."""
    a = RECIPE["augment"]
    batch = torch.zeros(len(words), SAMPLES)
    for row, word in enumerate(words):
        start = int(torch.randint(0, SAMPLES - len(word) + 1, (1,), generator=generator))
        batch[row, start:start + len(word)] = torch.from_numpy(word.astype(np.float32))
    rms = batch.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(1e-8)
    gain = 10 ** (torch.empty(len(words), 1).uniform_(*a["loudness_db"], generator=generator) / 20)
    return batch * (0.1 * gain / rms)


def augmented(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A synthetic room (exponentially decaying noise as impulse response) and background noise."""
    a = RECIPE["augment"]
    n = len(batch)
    rt60 = torch.empty(n, 1).uniform_(*a["rt60"], generator=generator)
    length = int(a["rt60"][1] * SAMPLE_RATE)
    t = torch.arange(length) / SAMPLE_RATE
    response = torch.randn(n, length, generator=generator) * torch.exp(-6.9 * t / rt60)
    response[:, 0] = 1.0 + response[:, 0].abs()  # the direct sound
    size = SAMPLES + length
    wet = torch.fft.irfft(torch.fft.rfft(batch, size) * torch.fft.rfft(response, size), size)[:, :SAMPLES]
    wet = wet * (batch.norm(dim=1, keepdim=True) / wet.norm(dim=1, keepdim=True).clamp_min(1e-8))
    room = torch.rand(n, 1, generator=generator) < a["room_probability"]
    batch = torch.where(room, wet, batch)
    snr = torch.empty(n, 1).uniform_(*a["snr_db"], generator=generator)
    rms = batch.pow(2).mean(dim=1, keepdim=True).sqrt()
    noise = coloured_noise(n, generator) * rms * 10 ** (-snr / 20)
    noisy = torch.rand(n, 1, generator=generator) < a["noise_probability"]
    return batch + noise * noisy


def with_silence(words: list[np.ndarray], labels: np.ndarray, generator: torch.Generator, augment: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of placed (and augmented) words plus silence examples (RECIPE["silence_fraction"])."""
    extra = max(1, int(round(len(words) * RECIPE["silence_fraction"])))
    batch = placed(words, generator)
    if augment:
        batch = augmented(batch, generator)
    batch = torch.cat([batch, silence(extra, generator)])
    target = torch.cat([torch.from_numpy(labels), torch.full((extra,), CLASSES.index("silence"))])
    return batch, target


def train(words: list[np.ndarray], labels: np.ndarray) -> WordNet:
    def epoch(generator):
        order = torch.randperm(len(words), generator=generator).numpy()
        for start in range(0, len(words), RECIPE["batch_size"]):
            index = order[start:start + RECIPE["batch_size"]]
            yield with_silence([words[i] for i in index], labels[index], generator)

    return train_classifier(WordNet, RECIPE, epoch, _logits)


def _logits(net: WordNet, wave: torch.Tensor) -> torch.Tensor:
    """The pre-softmax outputs, which the loss takes (net() returns probabilities)."""
    captured = {}
    handle = net.logits.register_forward_hook(lambda module, inputs, output: captured.setdefault("x", output))
    try:
        net(wave)
    finally:
        handle.remove()
    return captured["x"]


def accuracy(net: nn.Module, words: list[np.ndarray], labels: np.ndarray, augment: bool = False,
             seed: int = 1) -> float:
    """Accuracy on these words, each at a random place and loudness in the 1 s window, with (if
    `augment`) the training's room and background noise, and mixed with silence examples as in
    training (from a generator of its own)."""
    generator = torch.Generator().manual_seed(seed)
    correct = total = 0
    with torch.no_grad():
        for start in range(0, len(words), 256):
            batch, target = with_silence(words[start:start + 256], labels[start:start + 256], generator, augment)
            correct += int((net(batch).argmax(1) == target).sum())
            total += len(target)
    return correct / total


def recipe_hash() -> str:
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:12]


def trained_net() -> tuple[WordNet, dict]:
    """The trained network and its measured accuracies (trained and measured once, then cached)."""
    from closedloop.zoo import espeak

    path = cache_dir() / f"word-{recipe_hash()}.pt"
    report = path.with_suffix(".json")
    with _train_lock:
        net = WordNet()
        if path.is_file() and report.is_file():
            net.load_state_dict(load_state_dict(path))
            return net.eval(), json.loads(report.read_text())
        data = dataset()
        net = train(*data["train"])
        numbers = {"espeak_ng": espeak.version(),
                   "test_accuracy": accuracy(net, *data["test"]),
                   "held_out_voice_accuracy": accuracy(net, *data["voices"]),
                   "test_accuracy_in_noise_and_rooms": accuracy(net, *data["test"], augment=True),
                   "held_out_voice_accuracy_in_noise_and_rooms": accuracy(net, *data["voices"], augment=True),
                   "train_utterances": len(data["train"][1]), "test_utterances": len(data["test"][1]),
                   "held_out_voice_utterances": len(data["voices"][1])}
        partial = path.with_suffix(f".{os.getpid()}.part")
        torch.save(net.state_dict(), partial)
        os.replace(partial, path)  # atomic: a concurrent process never reads half a file
        partial = report.with_suffix(f".{os.getpid()}.part")
        partial.write_text(json.dumps(numbers, indent=1))
        os.replace(partial, report)
        return net, numbers


def network() -> nn.Module:
    return trained_net()[0]


def card() -> ZooModel:
    units = {word: UnitSpec("", CLASSES.index(word), None, f"probability of the word {word!r}", ("word", word))
             for word in WORDS}
    units["unknown"] = UnitSpec("", CLASSES.index("unknown"), None, "probability of another word")
    units["silence"] = UnitSpec("", CLASSES.index("silence"), None, "probability of no word")
    units.update({f"logit:{word}": UnitSpec("logits", CLASSES.index(word), None, f"logit of the word {word!r}",
                                            ("word", word)) for word in WORDS})
    for layer, channels in (("conv1", 64), ("conv2", 64), ("conv3", 96)):
        units.update(channel_units(layer, channels, "before normalisation and ReLU, mean over time"))
    return ZooModel(
        name="word",
        input_shape=(SAMPLES,),
        value_range=(-1.0, 1.0),
        modality="audio",
        sample_rate=SAMPLE_RATE,
        default_unit="yes",
        description=(f"keyword-spotting CNN trained here (first use, cached) on espeak-ng words ({', '.join(WORDS)}, "
                     "plus silence and unknown); held-out accuracy 0.974, 0.957 on voices never heard in "
                     "training (the training run writes its own figures beside the weights); outputs 12 class "
                     "probabilities"),
        units=units,
    )

if __name__ == "__main__":  # a synthesis worker: python -m closedloop.zoo.word REQUEST.json OUTPUT.npz
    _speak_request(sys.argv[1], sys.argv[2])
