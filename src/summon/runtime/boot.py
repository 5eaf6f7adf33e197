"""What the image's interpreter runs first (/usr/lib/summon/boot.py): hand over to the runtime.

Run as a script, its folder (/usr/lib/summon) is sys.path[0], which is where the summon
package sits in an image.
"""

import sys

from summon.runtime.init import main

if __name__ == "__main__":
    sys.exit(main())
