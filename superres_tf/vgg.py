"""Former home of the VGG16 loader, now `superres_tf.features`; this name is that same module.

`from superres_tf.vgg import load_vgg16, CaffePreprocess, dtype_policy, float32_policy` keeps
working (and patching `vgg._download_imagenet` patches `features`) until every importer uses
`superres_tf.features` directly.
"""

import sys

from superres_tf import features

sys.modules[__name__] = features
