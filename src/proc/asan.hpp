// src/proc/asan.hpp: VIGIL_ASAN is 1 in an AddressSanitizer build, whichever compiler: gcc
// defines __SANITIZE_ADDRESS__, clang (before 16) only answers __has_feature(address_sanitizer).
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#define VIGIL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VIGIL_ASAN 1
#endif
#endif
#ifndef VIGIL_ASAN
#define VIGIL_ASAN 0
#endif
