# libvirt test hosts (issue 13): a test host of TestHosts.ps1 that also runs its own libvirtd, so two
# of them on this machine look like two libvirt hosts to each other. Dot-source after
# TestHelpers.ps1 and TestHosts.ps1. Needs root and libvirt (./build.ps1 deps). See
# docs/libvirt-test-topology.md.
#
# One host, e.g. New-LibvirtTestHost -Name h1: network, mount and UTS namespaces held by its sshd
# (New-TestHost -HostName -PrivateMounts); libvirtd is started into the same three namespaces, so a
# remoting session, libvirtd and libvirt's QEMU all see the same addresses, hostname and folders:
#
#   inside the host            the host's Folder (root namespace path, same file)
#   /etc/libvirt           ->  libvirt/etc     libvirtd.conf (host_uuid), qemu.conf (no cgroups/
#                                              namespaces/security driver, user root), domain XML
#   /run/libvirt           ->  libvirt/run     libvirt-sock: ConnectionUri points here
#   /var/lib/libvirt       ->  libvirt/lib
#   /var/log/libvirt       ->  libvirt/log     libvirtd.log, qemu/<domain>.log, <domain>.serial.log
#   /var/cache/libvirt     ->  libvirt/cache   QEMU capabilities
#   /run/deltamigrate      ->  sockets         SocketDirectory: the same path on every host
#
#   $h1 = New-LibvirtTestHost -Name h1 -LinkRate 1gbit
#   $h2 = New-LibvirtTestHost -Name h2 -LinkRate 1gbit
#   Connect-TestHost -From $h1 -To $h2
#   $d = New-LibvirtTestDomain -TestHost $h1 -Name vm1
#   Invoke-LibvirtTestVirsh -TestHost $h1 migrate --live vm1 $h2.ConnectionUri --migrateuri "tcp://$($h2.Address):49152"
#   Get-Heartbeat (Get-LibvirtTestSerialLog -TestHost $h2 -Name vm1)
#   Remove-LibvirtTestHost $h1, $h2

$script:LibvirtTestEmulator = '/usr/bin/qemu-system-x86_64'   # QEMU 7.2, the one machine type pc-i440fx-7.2 comes from
$script:LibvirtTestSocketDirectory = '/run/deltamigrate'
$script:LibvirtTestFolders = [ordered]@{
    '/etc/libvirt' = 'libvirt/etc'; '/run/libvirt' = 'libvirt/run'; '/var/lib/libvirt' = 'libvirt/lib'
    '/var/log/libvirt' = 'libvirt/log'; '/var/cache/libvirt' = 'libvirt/cache'
}

function New-LibvirtTestHost {
    <#
    .SYNOPSIS
        A test host (New-TestHost) with its own hostname, private libvirt folders and host UUID, and its own libvirtd.
    #>
    param(
        [Parameter(Mandatory)] [ValidatePattern('^[a-z0-9]{1,12}$')] [string] $Name,
        [string] $LinkRate
    )
    if (-not (Test-Path /usr/sbin/libvirtd) -or -not (Get-Command virsh -ErrorAction Ignore)) {
        throw 'libvirt is missing: run ./build.ps1 deps (installs libvirt-daemon-system and libvirt-clients).'
    }
    $mounts = [ordered]@{}
    foreach ($target in $LibvirtTestFolders.Keys) { $mounts[$target] = $LibvirtTestFolders[$target] }
    $mounts[$LibvirtTestSocketDirectory] = 'sockets'
    # The hostname libvirt compares (with the host UUID) to refuse a migration to the same host.
    $hostName = "dm-$Name-$([guid]::NewGuid().ToString('n').Substring(0, 6))"
    $h = New-TestHost -Name $Name -LinkRate $LinkRate -HostName $hostName -PrivateMounts $mounts
    try {
        $root = Join-Path $h.Folder 'libvirt'
        $h | Add-Member -NotePropertyMembers ([ordered]@{
                LibvirtRoot = $root
                ConnectionUri = "qemu+unix:///system?socket=$root/run/libvirt-sock"
                SocketDirectory = $LibvirtTestSocketDirectory
                HostUuid = [guid]::NewGuid().ToString()
                LibvirtdLog = Join-Path $root 'log/libvirtd.log'
                LibvirtdProcess = $null; LibvirtdPid = 0
            })
        $null = New-Item -ItemType Directory -Force (Join-Path $root 'log/qemu'), (Join-Path $root 'etc/qemu')
        @"
# Test host '$Name': only the local UNIX socket, no authentication (root-only folder).
unix_sock_dir = "/run/libvirt"
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
host_uuid = "$($h.HostUuid)"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"@ | Set-Content (Join-Path $root 'etc/libvirtd.conf')
        # A container without systemd, cgroups or AppArmor: QEMU runs as root in libvirtd's namespaces
        # (no private /dev), and its stdio goes to a file instead of virtlogd, which never runs here.
        @'
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
'@ | Set-Content (Join-Path $root 'etc/qemu.conf')
        Start-LibvirtTestDaemon $h
        $h
    }
    catch {
        $err = $_
        $log = if (Test-Path $h.LibvirtdLog) { " libvirtd log: $((Get-Content $h.LibvirtdLog -Tail 20) -join ' | ')" }
        Remove-LibvirtTestHost $h
        throw "New-LibvirtTestHost '$Name' ($($h.Namespace)) failed: $err$log"
    }
}

function Start-LibvirtTestDaemon {
    # Starts the host's libvirtd inside its namespaces (entered through sshd's pid) and waits until
    # virsh gets an answer. Also for tests that stop libvirtd to see the module's error, then restart it.
    param([Parameter(Mandatory)] $TestHost, [int] $TimeoutSeconds = 120)
    if ($TestHost.LibvirtdProcess -and -not $TestHost.LibvirtdProcess.HasExited) { throw "libvirtd of '$($TestHost.Name)' is already running." }
    # nsenter forks nothing without --pid, so this process becomes libvirtd itself.
    $TestHost.LibvirtdProcess = Start-TestHostProcess @('nsenter', '--target', "$($TestHost.Pid)", '--net', '--mount', '--uts', '--',
        '/usr/sbin/libvirtd', '--config', '/etc/libvirt/libvirtd.conf', '--pid-file', '/run/libvirt/libvirtd.pid')
    $TestHost.LibvirtdPid = $TestHost.LibvirtdProcess.Id
    # Ready means the daemon answers on its socket (it probes QEMU's capabilities first, seconds under load).
    $deadline = [DateTime]::UtcNow.AddSeconds($TimeoutSeconds)
    while ($true) {
        if ($TestHost.LibvirtdProcess.HasExited) { throw "libvirtd exited with code $($TestHost.LibvirtdProcess.ExitCode): $($TestHost.LibvirtdProcess.StandardErrorText.Result)" }
        $out = & virsh -c $TestHost.ConnectionUri -q version 2>&1
        if ($LASTEXITCODE -eq 0) { return }
        if ([DateTime]::UtcNow -gt $deadline) { throw "Timed out after $TimeoutSeconds s waiting for libvirtd of '$($TestHost.Name)': $($out -join ' ')" }
        Start-Sleep -Milliseconds 200
    }
}

function Stop-LibvirtTestDaemon {
    # Stops the host's libvirtd (SIGTERM, then SIGKILL); its domains' QEMUs keep running, as on a real host.
    param([Parameter(Mandatory)] $TestHost)
    $p = $TestHost.LibvirtdProcess
    if (-not $p -or $p.HasExited) { return }
    & kill -TERM $p.Id 2>$null
    if (-not $p.WaitForExit(15000)) {
        $p.Kill()
        if (-not $p.WaitForExit(10000)) { throw "libvirtd $($p.Id) of '$($TestHost.Name)' did not exit." }
    }
}

function Invoke-LibvirtTestVirsh {
    # virsh against the host's libvirtd; throws with virsh's message when it fails. No param block,
    # so virsh's own flags (--live, --all) reach it; the host comes first: -TestHost $h or just $h.
    if ($args[0] -eq '-TestHost') { $null, $testHost, $rest = $args } else { $testHost, $rest = $args }
    if (-not $testHost.ConnectionUri) { throw 'Invoke-LibvirtTestVirsh: the first argument must be a libvirt test host (New-LibvirtTestHost).' }
    Invoke-TestHostNative virsh -c $testHost.ConnectionUri @($rest | ForEach-Object { "$_" })
}

function Get-LibvirtTestSerialLog {
    # Where a domain's serial console (the guest's heartbeats) lands on that host, seen from the root
    # namespace: the domain XML names /var/log/libvirt/<name>.serial.log, private per host, so after a
    # migration the destination QEMU writes its own file.
    param([Parameter(Mandatory)] $TestHost, [Parameter(Mandatory)] [string] $Name)
    Join-Path $TestHost.LibvirtRoot "log/$Name.serial.log"
}

function New-LibvirtTestDomain {
    <#
    .SYNOPSIS
        A running libvirt domain with the test guest (direct kernel boot, TCG, pc-i440fx-7.2, no disks,
        no network), returned once the guest has filled its working set and heartbeats advance.
    .PARAMETER Workload
        The test guest's kernel command line (tests/guest/README.md).
    .PARAMETER Persistent
        Defines the domain, then starts it; without it the domain is transient (virsh create).
    #>
    param(
        [Parameter(Mandatory)] $TestHost,
        [Parameter(Mandatory)] [ValidatePattern('^[A-Za-z0-9_-]{1,40}$')] [string] $Name,
        [ValidateRange(32, 4096)] [int] $MemoryMiB = 128,
        [string] $Workload = 'ws=32 hot=8 rate=2000 bytes=16 pattern=scatter fill=random',
        [switch] $Persistent
    )
    $xml = New-LibvirtTestDomainXml -Name $Name -MemoryMiB $MemoryMiB -Workload $Workload
    $file = Join-Path $TestHost.LibvirtRoot "$Name.xml"
    $xml | Set-Content $file
    if ($Persistent) {
        Invoke-LibvirtTestVirsh $TestHost define $file | Out-Null
        Invoke-LibvirtTestVirsh $TestHost start $Name | Out-Null
    }
    else { Invoke-LibvirtTestVirsh $TestHost create $file | Out-Null }
    $serial = Get-LibvirtTestSerialLog -TestHost $TestHost -Name $Name
    Wait-Until { Select-String -Path $serial -Pattern '^DMGUEST ready' -Quiet } "guest of domain '$Name' to fill its working set ($serial)"
    $start = Get-Heartbeat $serial
    Wait-Until { (Get-Heartbeat $serial) -gt $start } "heartbeat of domain '$Name'"
    [pscustomobject]@{ Name = $Name; SerialLog = $serial; Xml = $xml; MemoryMiB = $MemoryMiB; Workload = $Workload; Persistent = [bool]$Persistent }
}

function New-LibvirtTestDomainXml([string] $Name, [int] $MemoryMiB, [string] $Workload) {
    # No USB, balloon, video or graphics: nothing libvirt adds by default that the guest does not use.
    $e = [Security.SecurityElement]
    @"
<domain type='qemu'>
  <name>$($e::Escape($Name))</name>
  <memory unit='MiB'>$MemoryMiB</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='$Machine'>hvm</type>
    <kernel>$($e::Escape($Guest))</kernel>
    <cmdline>$($e::Escape($Workload))</cmdline>
  </os>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$LibvirtTestEmulator</emulator>
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path='/var/log/libvirt/$($e::Escape($Name)).serial.log'/>
      <target port='0'/>
    </serial>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
"@
}

function Remove-LibvirtTestHost {
    # Destroys the host's domains, stops libvirtd, then Remove-TestHost (sshd, everything left in the
    # namespaces, veth, folders). Safe to call twice.
    param([Parameter(Mandatory, ValueFromPipeline)] $TestHost)
    process {
        if ($TestHost.LibvirtdProcess -and -not $TestHost.LibvirtdProcess.HasExited) {
            $running = & virsh -c $TestHost.ConnectionUri list --name 2>$null | Where-Object { $_ }
            foreach ($domain in $running) { & virsh -c $TestHost.ConnectionUri destroy $domain 2>&1 | Out-Null }
        }
        if ($TestHost.PSObject.Properties['LibvirtdProcess']) { Stop-LibvirtTestDaemon $TestHost }
        Remove-TestHost $TestHost
    }
}
