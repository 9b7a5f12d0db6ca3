"""What turns a converted model into deliverables, above the three stages (it may use any of them): the
model card document (``card_document``, ``melkit card``), the threshold and temperature re-fit
(``calibrate``), the Android and web bundles (``bundle``) and the golden vectors their clients are tested
against (``golden``)."""

from melkit.util.lazy import lazy_exports

_EXPORTS = {  # name -> the submodule that defines it, imported on first use (melkit.util.lazy)
    "BundleResult": "bundle",
    "WebBundleResult": "bundle",
    "run_bundle": "bundle",
    "run_bundle_web": "bundle",
    "run_web": "bundle",
    "CalibrateOptions": "calibrate",
    "CalibrateResult": "calibrate",
    "run_calibrate": "calibrate",
    "CardOptions": "card_document",
    "CardResult": "card_document",
    "run_card": "card_document",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
