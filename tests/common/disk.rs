//! Disk faults: a small ext4 filesystem on a loop device (root only), which a test can shut
//! down (every later write fails with EIO, as on a dying disk) or fill.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{run_cmd, BoundedOutput, COMMAND_LIMIT};

/// Why the disk-fault tests cannot run on this machine, or `None` if they can. They mount
/// filesystems (root, loop devices, `mkfs.ext4`, `e2fsck`) and shut one down with an ioctl
/// that only `python3` can issue without unsafe code here.
pub fn disk_faults_unavailable() -> Option<String> {
    let uid = run_cmd("id", &["-u"]).unwrap_or_default();
    if uid.trim() != "0" {
        return Some("needs root (mount -o loop)".into());
    }
    for (program, args) in [
        ("mkfs.ext4", &["-V"][..]),
        ("e2fsck", &["-V"][..]),
        ("losetup", &["--version"][..]),
        ("python3", &["-c", "import fcntl, struct"][..]),
    ] {
        if let Err(why) = run_cmd(program, args) {
            return Some(format!("needs {program} ({why})"));
        }
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("needs loop devices (/dev/loop-control is missing)".into());
    }
    None
}

/// An ext4 filesystem in an image file, loop-mounted on a directory. Dropping it unmounts
/// it (lazily if something still holds it open), detaches its loop device and removes the
/// image, also when the test panics; declare it after the test directory and before the
/// processes that use it, so those are killed first and the directory removed last.
pub struct LoopFs {
    pub image: PathBuf,
    pub mount_point: PathBuf,
    mounted: bool,
}

impl LoopFs {
    /// Creates a `size_mib` MiB ext4 image at `image` and mounts it on `mount_point` (which
    /// must exist), mode 0700 like a cosigner's state directory. An error says why, for
    /// the caller to skip the test with.
    pub fn mount(image: &Path, mount_point: &Path, size_mib: u64) -> Result<LoopFs, String> {
        let file = std::fs::File::create(image).map_err(|e| format!("create image: {e}"))?;
        file.set_len(size_mib << 20)
            .map_err(|e| format!("size image: {e}"))?;
        drop(file);
        let image_arg = image.to_str().ok_or("image path is not UTF-8")?;
        run_cmd("mkfs.ext4", &["-q", "-F", image_arg])?;
        let mut fs = LoopFs {
            image: image.to_path_buf(),
            mount_point: mount_point.to_path_buf(),
            mounted: false,
        };
        fs.remount()?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(mount_point, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("chmod {}: {e}", mount_point.display()))?;
        Ok(fs)
    }

    fn mount_arg(&self) -> Result<&str, String> {
        self.mount_point
            .to_str()
            .ok_or_else(|| "mount point is not UTF-8".into())
    }

    /// Mounts the image again (after [`LoopFs::unmount`]).
    pub fn remount(&mut self) -> Result<(), String> {
        let image = self.image.to_str().ok_or("image path is not UTF-8")?;
        run_cmd("mount", &["-o", "loop", image, self.mount_arg()?])?;
        self.mounted = true;
        Ok(())
    }

    /// Makes every later write, fsync and open on the filesystem fail with EIO, as a dying
    /// disk does, file descriptors already open included: `EXT4_IOC_SHUTDOWN` with
    /// `EXT4_GOING_FLAGS_NOLOGFLUSH` (the journal is not flushed either).
    pub fn shut_down(&self) -> Result<(), String> {
        const SCRIPT: &str = "import os, fcntl, struct, sys\n\
             fd = os.open(sys.argv[1], os.O_RDONLY)\n\
             fcntl.ioctl(fd, 0x8004587D, struct.pack('I', 2))\n";
        run_cmd("python3", &["-c", SCRIPT, self.mount_arg()?]).map(|_| ())
    }

    /// Unmounts (the "repair" starts with taking the disk offline).
    pub fn unmount(&mut self) -> Result<(), String> {
        run_cmd("umount", &[self.mount_arg()?])?;
        self.mounted = false;
        Ok(())
    }

    /// Runs `e2fsck -fy` on the unmounted image; its report. Exit codes 1 and 2 mean errors
    /// were found and corrected, which is what a shut-down filesystem may need.
    pub fn fsck(&self) -> Result<String, String> {
        assert!(!self.mounted, "fsck of a mounted filesystem");
        let image = self.image.to_str().ok_or("image path is not UTF-8")?;
        let out = Command::new("e2fsck")
            .args(["-fy", image])
            .output_within(COMMAND_LIMIT)
            .map_err(|e| format!("e2fsck: {e}"))?;
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        match out.status.code() {
            Some(0..=2) => Ok(report),
            _ => Err(format!("e2fsck {image}: {}: {report}", out.status)),
        }
    }

    /// Fills the filesystem: writes `<mount>/filler` until the disk reports ENOSPC, then
    /// checks that not even one more block can be written. Returns the bytes written.
    pub fn fill(&self) -> Result<u64, String> {
        use std::io::Write;
        let enospc = |e: &std::io::Error| e.raw_os_error() == Some(28);
        let path = self.mount_point.join("filler");
        let mut file = std::fs::File::create(&path).map_err(|e| format!("filler: {e}"))?;
        let mut written = 0u64;
        // Large writes first, then single blocks to take the remainder.
        for chunk in [1usize << 20, 4096] {
            let buf = vec![0xa5u8; chunk];
            loop {
                match file.write(&buf) {
                    Ok(0) => break,
                    Ok(n) => written += n as u64,
                    Err(e) if enospc(&e) => break,
                    Err(e) => return Err(format!("filler: {e}")),
                }
            }
        }
        file.sync_all().map_err(|e| format!("fsync filler: {e}"))?;
        if self.is_full()? {
            Ok(written)
        } else {
            Err(format!(
                "{} is not full after {written} bytes",
                self.mount_point.display()
            ))
        }
    }

    /// Whether not even one more block can be written: a probe file's first 4 KiB fail
    /// with ENOSPC. The probe is removed again.
    pub fn is_full(&self) -> Result<bool, String> {
        use std::io::Write;
        let enospc = |e: &std::io::Error| e.raw_os_error() == Some(28);
        let probe = self.mount_point.join("probe");
        let full = match std::fs::File::create(&probe) {
            Err(e) if enospc(&e) => true,
            Err(e) => return Err(format!("probe: {e}")),
            Ok(mut f) => match f.write_all(&[0u8; 4096]).and_then(|()| f.sync_all()) {
                Err(e) if enospc(&e) => true,
                Err(e) => return Err(format!("probe: {e}")),
                Ok(()) => false,
            },
        };
        let _ = std::fs::remove_file(&probe);
        Ok(full)
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if self.mounted {
            let Ok(mount) = self.mount_arg().map(str::to_string) else {
                return;
            };
            if run_cmd("umount", &[&mount]).is_err() {
                // Still held open (a process not yet reaped): detach now, free when closed.
                let _ = run_cmd("umount", &["-l", &mount]);
            }
        }
        if let Some(image) = self.image.to_str() {
            // `mount -o loop` sets autoclear, so this normally finds nothing; it is for a
            // loop device left behind by an interrupted mount or a lazy unmount.
            if let Ok(list) = run_cmd("losetup", &["-j", image]) {
                for device in list.lines().filter_map(|l| l.split(':').next()) {
                    let _ = run_cmd("losetup", &["-d", device]);
                }
            }
        }
        let _ = std::fs::remove_file(&self.image);
    }
}
