"""The scanner simulator: phase images of a phantom, written as DICOM and NIfTI."""

import json

import nibabel as nib
import numpy as np
import pydicom
import pytest

from napari_mrepinn import acquisition as aq
from napari_mrepinn import preprocess as pp
from napari_mrepinn import simulate


@pytest.fixture(scope="module")
def phantom():
    return simulate.four_target(shape=(20, 24, 3), n_components=2)


@pytest.fixture(scope="module")
def acq(phantom):
    return aq.acquire(phantom, n_offsets=4, background=9.0)


def test_phase_is_wrapped_and_encodes_the_wave(acq, phantom):
    assert acq.phase.shape == (1, 2, 4, 20, 24, 3)
    assert acq.phase.min() >= -np.pi and acq.phase.max() <= np.pi
    # the background makes the stored phase wrap
    assert pp.count_wraps(acq.phase) > 100
    # the wrapped phase encodes the phantom's wave up to one real scale: the temporal
    # harmonic of exp(iφ) is unaffected by wrapping
    u = pp.first_harmonic(np.angle(np.exp(1j * acq.phase[0, 1]))[None], axis=1)[0]
    assert u.shape == (20, 24, 3)
    scale = acq.wave.ravel()[np.argmax(np.abs(acq.wave))] / phantom.wave.values.ravel()[
        np.argmax(np.abs(phantom.wave.values))]
    np.testing.assert_allclose(acq.wave[0], phantom.wave.values * scale, atol=1e-9)
    assert abs(scale.imag) < 1e-9 and np.abs(acq.wave).max() == pytest.approx(2.0)


def test_noise_is_complex_with_the_given_phase_spread(phantom):
    clean = aq.acquire(phantom, n_offsets=4, noise=0.0, seed=1)
    noisy = aq.acquire(phantom, n_offsets=4, noise=0.05, seed=1)
    d = pp.wrap(noisy.phase - clean.phase)
    # phase noise ≈ σ/|M| with |M| ≈ 1 (0.8 in the targets)
    assert 0.03 < d.std() < 0.08
    assert not np.allclose(noisy.magnitude, clean.magnitude)


def test_classic_dicom_files_are_standard(acq, tmp_path):
    paths = aq.write_dicom(acq, tmp_path, rescale="siemens")
    assert len(paths) == 2
    files = sorted(paths[0].glob("*.dcm"))
    assert len(files) == 2 * 4 * 3  # phase + magnitude, 4 offsets × 3 slices
    ds = pydicom.dcmread(files[0])  # no force=True
    assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    assert ds.SOPClassUID == pydicom.uid.MRImageStorage
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.BitsStored == 12 and ds.BitsAllocated == 16
    kinds = set()
    for f in files:
        d = pydicom.dcmread(f)
        kinds.add(d.ImageType[2])
        assert d.pixel_array.max() <= 4095
        assert (d.Rows, d.Columns) == (24, 20)  # rows along y, columns along x
        if d.ImageType[2] == "P":
            assert float(d.RescaleSlope) == 2 and float(d.RescaleIntercept) == -4096
            assert 1 <= d.TemporalPositionIdentifier <= 4
    assert kinds == {"P", "M"}
    # the stored values give back the phase (12-bit quantisation)
    d = next(pydicom.dcmread(f) for f in files if "_ph_" in f.name)
    z = round((float(d.ImagePositionPatient[2]) / 1e3 - acq.origin[2]) / acq.spacing[2])
    t = d.TemporalPositionIdentifier - 1
    rad = pp.phase_to_radians(d.pixel_array.T, bits_stored=12)
    assert np.abs(pp.wrap(rad - acq.phase[0, 0, t, :, :, z])).max() < 2 * np.pi / 4096


def test_enhanced_dicom_is_one_multiframe_file(acq, tmp_path):
    paths = aq.write_dicom(acq, tmp_path, enhanced=True, temporal="trigger")
    ds = pydicom.dcmread(paths[0])
    assert ds.SOPClassUID == pydicom.uid.EnhancedMRImageStorage
    assert ds.NumberOfFrames == 2 * 4 * 3
    assert ds.pixel_array.shape == (24, 24, 20)
    fr = ds.PerFrameFunctionalGroupsSequence[0]
    assert fr.MRImageFrameTypeSequence[0].ComplexImageComponent in ("PHASE", "MAGNITUDE")
    assert "TemporalPositionIndex" not in fr.FrameContentSequence[0]


def test_nifti_like_dcm2niix(acq, tmp_path):
    paths = aq.write_nifti(acq, tmp_path)
    assert [p.name.endswith("_ph.nii.gz") for p in paths] == [True, True]
    img = nib.load(paths[0])
    assert img.shape == (20, 24, 3, 4)
    assert np.allclose(img.header.get_zooms()[:3], np.asarray(acq.spacing) * 1e3)
    meta = json.loads(paths[0].with_name(paths[0].name.replace(".nii.gz", ".json")).read_text())
    assert "P" in meta["ImageType"] and "frequency" not in meta
    five = aq.write_nifti(acq, tmp_path / "5d", five_d=True)
    assert nib.load(five[0]).shape == (20, 24, 3, 4, 2)
