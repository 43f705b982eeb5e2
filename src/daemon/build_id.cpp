// build_id.cpp: see build_id.hpp.
#include "build_id.hpp"

#include <cstdint>
#include <cstring>
#include <elf.h>
#include <link.h>

namespace vigil::daemon {

namespace {

// The build ID in the notes of the first object dl_iterate_phdr reports: the program itself.
int first_object(dl_phdr_info *info, std::size_t, void *data) {
    auto *out = static_cast<std::string *>(data);
    for (ElfW(Half) i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr) &ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_NOTE) continue;
        const auto *p = reinterpret_cast<const unsigned char *>(info->dlpi_addr + ph.p_vaddr);
        std::size_t left = ph.p_memsz;
        while (left >= sizeof(ElfW(Nhdr))) {
            ElfW(Nhdr) n;
            std::memcpy(&n, p, sizeof n);
            const std::size_t name_size = (n.n_namesz + 3u) & ~std::size_t{3};
            const std::size_t desc_size = (n.n_descsz + 3u) & ~std::size_t{3};
            if (name_size > left - sizeof n || desc_size > left - sizeof n - name_size) break;
            const unsigned char *name = p + sizeof n;
            const unsigned char *desc = name + name_size;
            if (n.n_type == NT_GNU_BUILD_ID && n.n_namesz == 4 &&
                std::memcmp(name, "GNU", 4) == 0) {
                static const char hex[] = "0123456789abcdef";
                for (std::size_t k = 0; k < n.n_descsz; ++k) {
                    out->push_back(hex[desc[k] >> 4]);
                    out->push_back(hex[desc[k] & 15]);
                }
                return 1;
            }
            p += sizeof n + name_size + desc_size;
            left -= sizeof n + name_size + desc_size;
        }
    }
    return 1; // only the first object is the program
}

} // namespace

const std::string &own_build_id() {
    static const std::string id = [] {
        std::string s;
        dl_iterate_phdr(first_object, &s);
        return s;
    }();
    return id;
}

} // namespace vigil::daemon
