/* test-bed shim: every framework header is the one fake header */
#include "xvpci_fake.h"
