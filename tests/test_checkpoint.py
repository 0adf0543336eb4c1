"""descend.save and descend.load: atomic writes, weights_only reads, clear errors."""

from __future__ import annotations

import functools
import os
import re
import stat
import zipfile

import numpy as np
import pytest
import torch

import descend
import descend.checkpoint
from descend import lr_scheduler as L
from descend.schedules import Cosine, Join, Linear, Scale, Warmup
from tests.resume_script import SCHEDULED, assert_identical
from tests.table import RECORDS

# --------------------------------------------------------------------------------------
# Round trips with weights_only=True
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("record", RECORDS, ids=[r.name for r in RECORDS])
def test_every_optimizer_state_dict_round_trips(record, tmp_path):
    """The state_dict of every config of the table's record, after three steps, and with
    one hyperparameter a schedule, comes back from save and load exactly (torch's configs
    round-trip through torch.load(weights_only=True) in test_optimizers.py)."""
    state_dicts = {}
    configs = [(c.desc, dict(c.kwargs)) for c in record.configs]
    key, schedule = SCHEDULED[record.name]
    configs.append(("scheduled", {key: schedule}))
    for desc, kwargs in configs:
        params = record.make_params()
        optimizer = record.cls(record.param_groups(params, record.configs[0]), **kwargs)
        record.run(optimizer, params, 3)
        state_dicts[desc] = optimizer.state_dict()
    path = tmp_path / "optimizers.pt"
    descend.save(state_dicts, path)
    loaded = descend.load(path)
    assert_identical(loaded, state_dicts, record.name)
    assert loaded["scheduled"]["param_groups"][0][key] == schedule


def _schedulers(optimizer: torch.optim.Optimizer) -> list:
    return [
        L.StepLR(optimizer, 2),
        L.MultiStepLR(optimizer, [2, 5]),
        L.ConstantLR(optimizer),
        L.LinearLR(optimizer),
        L.ExponentialLR(optimizer, 0.9),
        L.PolynomialLR(optimizer),
        L.CosineAnnealingLR(optimizer, 10),
        L.CosineAnnealingWarmRestarts(optimizer, 3),
        L.CyclicLR(optimizer, 0.01, 0.1),
        L.OneCycleLR(optimizer, 1.0, total_steps=10),
        L.LambdaLR(optimizer, lambda step: 0.9**step),
        L.MultiplicativeLR(optimizer, lambda step: 0.9),
        L.SequentialLR(optimizer, [L.LinearLR(optimizer), L.ExponentialLR(optimizer, 0.9)], [3]),
        L.ChainedScheduler([L.LinearLR(optimizer), L.ExponentialLR(optimizer, 0.9)]),
        L.ReduceLROnPlateau(optimizer),
        descend.SWALR(optimizer, 0.05),
    ]


def test_every_scheduler_state_dict_round_trips(tmp_path):
    """Every scheduler of descend.lr_scheduler (and SWALR), stepped a few times; lambdas
    are not part of their state dicts."""
    model = torch.nn.Linear(3, 2)
    optimizer = descend.SGD(model.parameters(), lr=0.1, momentum=0.9)
    state_dicts = {}
    for scheduler in _schedulers(optimizer):
        for _ in range(4):
            optimizer.step()  # no gradients: changes nothing, and counts
            if isinstance(scheduler, L.ReduceLROnPlateau):
                scheduler.step(1.0)
            else:
                scheduler.step()
        state_dicts[type(scheduler).__name__] = scheduler.state_dict()
    assert len(state_dicts) == 16
    descend.save(state_dicts, tmp_path / "schedulers.pt")
    assert_identical(descend.load(tmp_path / "schedulers.pt"), state_dicts, "schedulers")


@pytest.mark.parametrize("every", [1, 3])
@pytest.mark.parametrize(
    "fn",
    [
        descend.get_ema_multi_avg_fn(0.9),
        descend.get_ema_multi_avg_fn(Cosine(0.99, 10, end=0.9), warmup=True),
        descend.get_ema_avg_fn(0.8),
        None,
    ],
    ids=["ema", "scheduled ema", "ema pairwise", "swa"],
)
def test_averaged_model_state_dict_round_trips(fn, every, tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    kind = "multi_avg_fn" if fn is None or fn.multi else "avg_fn"
    averaged = descend.AveragedModel(model, every=every, **{kind: fn})
    for _ in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        averaged.update_parameters(model)
    state = averaged.state_dict()
    descend.save(state, tmp_path / "ema.pt")
    loaded = descend.load(tmp_path / "ema.pt")
    assert_identical(dict(loaded), dict(state), "ema")
    assert int(loaded["n_averaged"]) == (4 if every == 1 else 2)


def test_nested_schedules_round_trip_inside_param_groups(tmp_path):
    lr = Join([Warmup(Cosine(0.1, 90), steps=10), Scale(Linear(1.0, 0.0, 10), 0.01)], [100])
    model = torch.nn.Linear(3, 2)
    optimizer = descend.AdamW(model.parameters(), lr=lr, betas=(0.9, Linear(0.9, 0.999, 50)))
    descend.save(optimizer.state_dict(), tmp_path / "adamw.pt")
    group = descend.load(tmp_path / "adamw.pt")["param_groups"][0]
    assert group["lr"] == lr
    assert group["betas"] == (0.9, Linear(0.9, 0.999, 50))


def test_load_puts_tensors_where_map_location_says(tmp_path):
    descend.save({"w": torch.ones(2, dtype=torch.float64)}, tmp_path / "w.pt")
    loaded = descend.load(tmp_path / "w.pt", map_location=torch.device("meta"))
    assert loaded["w"].device.type == "meta"
    assert loaded["w"].dtype == torch.float64


def test_a_legacy_torch_file_loads(tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.arange(3.0)}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(descend.load(path)["w"], torch.arange(3.0))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("protocol", [2, 3, 4])
@pytest.mark.parametrize("zipped", [False, True], ids=["legacy", "zip"])
def test_torch_files_of_every_pickle_protocol_are_recognized(tmp_path, protocol, zipped):
    """The legacy format's magic number is pickled in the file's protocol: after PROTO,
    and from protocol 4 on after a FRAME opcode too. torch's weights_only unpickler reads
    protocols 2 and 3 only; for 4, the error says so rather than "corrupt"."""
    path = tmp_path / f"protocol-{protocol}.pt"
    saved = {"w": torch.arange(3.0), "step": 7}
    torch.save(saved, path, _use_new_zipfile_serialization=zipped, pickle_protocol=protocol)
    assert path.read_bytes()[:2] == (b"PK" if zipped else bytes([0x80, protocol]))
    assert_identical(descend.load(path, weights_only=False), saved, "weights_only=False")
    if protocol < 4:
        assert_identical(descend.load(path), saved, "weights_only=True")
        return
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"descend.load: {str(path)!r} was pickled with protocol 4, whose opcodes "
            "torch.load(weights_only=True) does not read"
        )
        + r".*Unsupported operand 149\); save it with torch\.save's default protocol, or, "
        "for a file from a trusted source only, pass weights_only=False",
    ):
        descend.load(path)


# --------------------------------------------------------------------------------------
# What weights_only refuses
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        (np.array([0.1, 0.05]), "numpy.ndarray"),
        (functools.partial(max, 0.1), "functools.partial"),
    ],
    ids=["numpy per-step values", "partial schedule"],
)
def test_save_refuses_what_load_could_not_read_and_keeps_the_old_file(value, refused, tmp_path):
    path = tmp_path / "optimizer.pt"
    descend.save({"lr": 0.1}, path)
    before = path.read_bytes()
    model = torch.nn.Linear(3, 2)
    optimizer = descend.SGD(model.parameters(), lr=value)
    with pytest.raises(
        ValueError,
        match=re.escape(f"descend.save: not writing {str(path)!r}: torch.load(weights_only=True)")
        + f".*{re.escape(refused)}.*pass weights_only=False",
    ):
        descend.save(optimizer.state_dict(), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["optimizer.pt"]
    # trusted: save and load without weights_only
    descend.save(optimizer.state_dict(), path, weights_only=False)
    loaded = descend.load(path, weights_only=False)["param_groups"][0]["lr"]
    assert type(loaded) is type(value)
    if callable(value):
        assert loaded(0.05) == 0.1
    else:
        assert np.array_equal(loaded, value)


def test_load_names_what_weights_only_refuses(tmp_path):
    path = tmp_path / "numpy.pt"
    torch.save({"lr": np.array([0.1, 0.2])}, path)
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"descend.load: {str(path)!r} holds objects that torch.load(weights_only=True) "
            "refuses to rebuild ("
        )
        + r".*numpy\.ndarray.*\); give schedules as descend\.schedules objects",
    ):
        descend.load(path)
    assert np.array_equal(descend.load(path, weights_only=False)["lr"], [0.1, 0.2])


# --------------------------------------------------------------------------------------
# Files that are not whole checkpoints
# --------------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "whole.pt"
    descend.save({"weights": torch.randn(64, 64), "step": 3}, path)
    return path


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.pt"
    with pytest.raises(
        FileNotFoundError,
        match=re.escape(f"descend.load: no checkpoint at {str(path)!r}: the file does not exist"),
    ):
        descend.load(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    with pytest.raises(
        ValueError, match=re.escape(f"descend.load: {str(path)!r} is empty (0 bytes)")
    ):
        descend.load(path)


@pytest.mark.parametrize("keep", [0.5, 0.99, 30], ids=["half", "all but the end", "30 bytes"])
def test_truncated_file(saved, keep):
    data = saved.read_bytes()
    size = int(len(data) * keep) if keep < 1 else keep
    saved.write_bytes(data[:size])
    with pytest.raises(
        ValueError,
        match=re.escape(f"descend.load: {str(saved)!r} ({size} bytes) is truncated or corrupt"),
    ):
        descend.load(saved)


def test_corrupt_file(saved):
    """The zip directory intact, the bytes of the pickle overwritten."""
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("data.pkl"))
    header = info.header_offset  # the local header: 30 bytes, the name, the extra field
    name_length = int.from_bytes(data[header + 26 : header + 28], "little")
    extra_length = int.from_bytes(data[header + 28 : header + 30], "little")
    start = header + 30 + name_length + extra_length
    assert data[start] == 0x80  # the pickle's PROTO opcode
    data[start : start + 8] = b"\xff" * 8
    saved.write_bytes(bytes(data))
    for weights_only in (True, False):
        with pytest.raises(
            ValueError,
            match=re.escape(f"descend.load: {str(saved)!r} ({len(data)} bytes) is corrupt: "),
        ):
            descend.load(saved, weights_only=weights_only)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"step,loss\n1,0.5\n", "is not a torch checkpoint: it starts with b'step,loss"),
        (b'{"lr": 0.1}', "is not a torch checkpoint: it starts with b'{\"lr\": 0.1}'"),
    ],
    ids=["csv", "json"],
)
def test_file_that_is_not_a_checkpoint(tmp_path, content, match):
    path = tmp_path / "notes.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(f"descend.load: {str(path)!r} {match}")):
        descend.load(path)


def test_zip_archive_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "bundle.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"descend.load: {str(path)!r} is a zip archive but not a torch checkpoint: it "
            "has no data.pkl (it holds ['readme.txt'])"
        ),
    ):
        descend.load(path)


def test_a_torchscript_archive_is_named(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    for weights_only in (True, False):
        with pytest.raises(
            ValueError,
            match=re.escape(
                f"descend.load: {str(path)!r} is a TorchScript archive (written by "
                "torch.jit.save), not a checkpoint: load it with torch.jit.load"
            ),
        ):
            descend.load(path, weights_only=weights_only)


def test_an_error_of_torch_about_the_machine_is_not_called_corruption(saved, monkeypatch):
    """A CUDA checkpoint on a machine without CUDA: the file is whole, torch's own
    message says what to do (the error torch.load raises there, simulated)."""
    message = (
        "Attempting to deserialize object on a CUDA device but torch.cuda.is_available() "
        "is False. If you are running on a CPU-only machine, please use torch.load with "
        "map_location=torch.device('cpu') to map your storages to the CPU."
    )

    def load(*args, **kwargs):
        raise RuntimeError(message)

    monkeypatch.setattr(torch, "load", load)
    size = saved.stat().st_size
    with pytest.raises(RuntimeError) as caught:
        descend.load(saved)
    assert str(caught.value) == (
        f"descend.load: {str(saved)!r} ({size} bytes) could not be loaded: {message}"
    )
    assert "corrupt" not in str(caught.value)


def test_a_directory_is_not_a_checkpoint(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory, not a checkpoint file"):
        descend.load(tmp_path)
    with pytest.raises(
        IsADirectoryError, match=r"descend\.save: cannot write .* it is a directory"
    ):
        descend.save({}, tmp_path)


def test_save_into_a_missing_directory(tmp_path):
    path = tmp_path / "runs" / "last.pt"
    with pytest.raises(
        FileNotFoundError,
        match=re.escape(f"the directory {str(tmp_path / 'runs')!r} does not exist"),
    ):
        descend.save({}, path)


def test_path_must_be_a_path():
    with pytest.raises(
        TypeError, match=re.escape("descend.save: path must be a str or os.PathLike, got int 3")
    ):
        descend.save({}, 3)
    with pytest.raises(
        TypeError, match=re.escape("descend.load: path must be a str or os.PathLike")
    ):
        descend.load(None)
    with pytest.raises(TypeError, match="weights_only must be True or False, got 'no'"):
        descend.load("x.pt", weights_only="no")


# --------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------


class _FailsToPickle:
    def __reduce__(self):
        raise RuntimeError("cannot pickle this")


def _interrupt_the_write(monkeypatch):
    """torch.save writes part of the file, then the disk is full."""
    real_save = torch.save

    def save(obj, file, *args, **kwargs):
        real_save(obj, file, *args, **kwargs)
        file.truncate(file.tell() // 2)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", save)
    return OSError, "No space left on device"


def _fail_to_pickle(monkeypatch):
    return RuntimeError, "cannot pickle this"


def _fail_the_rename(monkeypatch):
    def replace(source, target):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", replace)
    return PermissionError, "Permission denied"


@pytest.mark.parametrize(
    "interrupt",
    [_interrupt_the_write, _fail_to_pickle, _fail_the_rename],
    ids=["disk full mid-write", "object fails to pickle mid-way", "rename fails"],
)
def test_interrupted_save_keeps_the_old_file_and_leaves_no_temporary(interrupt, tmp_path):
    path = tmp_path / "checkpoint.pt"
    descend.save({"step": 1, "weights": torch.ones(3)}, path)
    before = path.read_bytes()
    new = {"step": 2, "weights": torch.randn(1000), "later": _FailsToPickle()}
    if interrupt is not _fail_to_pickle:
        del new["later"]
    with pytest.MonkeyPatch.context() as monkeypatch:
        error, message = interrupt(monkeypatch)
        with pytest.raises(error, match=message):
            descend.save(new, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["checkpoint.pt"]
    assert descend.load(path)["step"] == 1


def test_save_replaces_the_file_and_syncs_file_then_directory(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    descend.save({"step": 1}, path)
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(source, target):
        events.append(f"replace {os.path.basename(target)}")
        assert os.path.dirname(source) == str(tmp_path)
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    descend.save({"step": 2}, path)
    assert events == ["fsync file", "replace checkpoint.pt", "fsync directory"]
    assert descend.load(path) == {"step": 2}
    assert os.listdir(tmp_path) == ["checkpoint.pt"]


def test_saved_file_has_the_permissions_of_a_plain_open(tmp_path):
    umask = os.umask(0o022)
    try:
        descend.save({}, tmp_path / "a.pt")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "a.pt").st_mode) == 0o644


def test_save_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "private.pt"
    descend.save({"step": 1}, path)
    os.chmod(path, 0o600)
    umask = os.umask(0o022)  # a new file would be 0o644
    try:
        descend.save({"step": 2}, path)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert descend.load(path) == {"step": 2}


def test_save_through_a_symbolic_link_replaces_its_target_and_keeps_the_link(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    target = runs / "step-100.pt"
    descend.save({"step": 100}, target)
    link = tmp_path / "latest.pt"
    link.symlink_to(target)
    descend.save({"step": 200}, link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert descend.load(target) == {"step": 200}
    assert sorted(os.listdir(tmp_path)) == ["latest.pt", "runs"]
    assert os.listdir(runs) == ["step-100.pt"]
    # a link to a file not written yet: the file is created, the link kept
    dangling = tmp_path / "next.pt"
    dangling.symlink_to(runs / "step-300.pt")
    descend.save({"step": 300}, dangling)
    assert dangling.is_symlink() and descend.load(runs / "step-300.pt") == {"step": 300}


def test_save_writes_a_file_whose_name_is_near_the_limit(tmp_path):
    """The temporary file's name has a fixed length: a 233-character name (the limit is
    255 bytes) still gets a temporary beside it."""
    path = tmp_path / ("x" * 230 + ".pt")
    descend.save({"step": 1}, path)
    descend.save({"step": 2}, path)
    assert descend.load(path) == {"step": 2}
    assert os.listdir(tmp_path) == [path.name]
