"""What turns a converted model into deliverables, above the three stages (it may use any of them): the
model card document (``card_document``, ``melkit card``), the threshold and temperature re-fit
(``calibrate``), the Android and web bundles (``bundle``) and the golden vectors their clients are tested
against (``golden``)."""

from melkit.release.bundle import BundleResult, WebBundleResult, run_bundle, run_bundle_web, run_web
from melkit.release.calibrate import CalibrateOptions, CalibrateResult, run_calibrate
from melkit.release.card_document import CardOptions, CardResult, run_card

__all__ = ["CalibrateOptions", "CalibrateResult", "run_calibrate", "CardOptions", "CardResult", "run_card",
           "BundleResult", "run_bundle", "WebBundleResult", "run_bundle_web", "run_web"]
