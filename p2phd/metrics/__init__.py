"""Stage 5, ``bin/evaluate``: FID and KID of renders (MindSpore is imported only by inception.py).

Where pytorch-fid's FID Inception weights come from (its inception.py, FID_WEIGHTS_URL):"""

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_NAME
)
