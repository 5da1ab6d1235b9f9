"""Stage 5, ``bin/evaluate``: FID and KID of renders, and their segmentation score (mIoU, pixel
accuracy). MindSpore is imported only by inception.py and drn.py.

Where the networks' weights come from: pytorch-fid's FID Inception (its inception.py,
FID_WEIGHTS_URL) and fyu/drn's Cityscapes DRNSeg (its README: "You can download the pretrained
DRN models on Cityscapes here")."""

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_NAME
)
DRN_WEIGHTS_NAME = "drn-d-105_ms_cityscapes.pth"
DRN_WEIGHTS_URL = "http://go.yf.io/drn-cityscapes-models"
