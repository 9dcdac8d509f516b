"""Every state a base volume (an image copied into a host's pool) goes through is a move
hypervisor.base_volume_states allows, and every move of the table is one the code makes: an upload that
fails leaves no row, one whose worker died is taken over by the redelivered operation and becomes ready,
and a ready volume is used as it is. On libvirt's simulated driver, with a node file of the test's own."""

from __future__ import annotations

import subprocess

import pytest

from hypervisor import base_volume_states, connection, images
from hypervisor.base_volume_states import State
from hypervisor.connection import HypervisorError
from hypervisor.models import BaseVolume
from tests import factories
from tests.column_history import ColumnHistory

pytestmark = pytest.mark.django_db


@pytest.fixture
def host(tmp_path):
    uri = factories.node_uri(tmp_path)
    yield factories.make_host(uri)
    connection.forget(uri)


@pytest.fixture
def image_file(tmp_path, settings):
    settings.IMAGE_DIR = tmp_path
    path = tmp_path / "tiny.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "16M"], check=True)
    return path


def test_every_state_is_in_the_table_and_the_model_uses_the_vocabulary():
    assert set(base_volume_states.TRANSITIONS) == set(State)
    assert {value for value, _label in BaseVolume._meta.get_field("state").choices} == set(
        base_volume_states.TRANSITIONS
    )
    assert BaseVolume.State is State
    assert not base_volume_states.may_move(State.READY, State.UPLOADING)


def test_a_base_volume_moves_only_along_the_table_and_makes_every_move_of_it(host, image_file, tmp_path):
    image = images.register_image("tiny", str(image_file), name="Tiny", os_family="test")
    name = images.volume_name(image, "disk", image.checksum)
    with ColumnHistory(BaseVolume, "state") as history:
        # The file went missing on the panel server: the upload fails and leaves no row behind.
        moved = image_file.rename(tmp_path / "elsewhere.qcow2")
        with pytest.raises(HypervisorError):
            images.ensure_base_volumes(host, image, owner="operation-1")
        assert not BaseVolume.objects.filter(host=host, volume_name=name).exists()
        moved.rename(image_file)

        # A worker takes the upload and dies; the redelivered operation takes it over and finishes it.
        assert images._claim_upload(host, image, "disk", name, image.checksum, "operation-2") is None
        with pytest.raises(images.UploadInProgress):
            images.ensure_base_volumes(host, image, owner="operation-3")
        paths = images.ensure_base_volumes(host, image, owner="operation-2")
        volume = BaseVolume.objects.get(host=host, volume_name=name)
        assert (volume.state, volume.path) == (State.READY, paths["disk"])

        # Later servers use the ready volume as it is.
        assert images.ensure_base_volumes(host, image, owner="operation-4") == paths

    assert history.inserted() == [State.UPLOADING, State.UPLOADING]
    assert history.trail(volume.pk) == ["uploading", "ready"]
    for old, new in history.moves():
        assert base_volume_states.may_move(old, new), f"{old} -> {new}"
    every_move = {(old, new) for old, targets in base_volume_states.TRANSITIONS.items() for new in targets}
    assert set(history.moves()) == every_move
