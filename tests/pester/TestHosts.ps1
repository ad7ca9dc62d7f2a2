# Test hosts for remoting tests (Move-KvmVM -DestinationHost): each "host" is a network namespace
# with its own sshd whose 'powershell' subsystem is the pinned pwsh, reachable from the test's own
# (root) namespace over a veth pair. Dot-source after TestHelpers.ps1.
#
# Topology of one host, e.g. New-TestHost -Name h2:
#
#   root namespace (the test's pwsh)              namespace dm-h2-<8 hex>
#   veth dm<8 hex>r  10.231.<n>.1/30  <------->  veth dm<8 hex>n  10.231.<n>.2/30, lo up
#   (tbf with -LinkRate)                          (tbf with -LinkRate)   sshd on .2:22
#
# The /30 lives only on this veth pair, which the test creates and Remove-TestHost deletes, so the
# addresses exist only while the host does and traffic goes nowhere else. The remote side shares this
# machine's filesystem (the module, QEMU, the test guest), but not its network: whatever a session
# starts (pwsh, QEMU) runs inside the namespace and listens on its addresses.
#
# Run directories: sshd hands every session DELTAMIGRATE_RUNDIR=<host's RunDirectory> (SetEnv), so a
# session opened by the test and one opened by the module itself both see the host's own VMs, never
# the test's. It also passes on PSModulePath when the tests run against the installed package
# (DELTAMIGRATE_TEST_MODULE), so the remote side imports that package by name too. To give one session another: New-TestHostSession -RunDirectory <dir>, or
#   Invoke-Command -Session $s { $env:DELTAMIGRATE_RUNDIR = $using:dir }
#
#   $h2 = New-TestHost -Name h2 -LinkRate 1gbit
#   $s  = New-TestHostSession -TestHost $h2
#   Invoke-Command -Session $s { Import-Module $using:ModuleUnderTest; Get-KvmVM }
#   Connect-TestHost -From $h1 -To $h2   # a direct link: from inside h1, $h2.Address is reachable
#   Remove-TestHost $h2    # in AfterAll: sessions, sshd and all it started, veth, namespace, folder

$script:TestHostPwsh = Join-Path $PSHOME 'pwsh'   # the pinned tool's own executable, beside pwsh.dll
$script:TestHostLock = Join-Path ([IO.Path]::GetTempPath()) 'dm-testhosts.lock'

function Invoke-TestHostNative {
    # Runs a program, throws with its output when it fails. No param block, so '-4' or '-n' reach it.
    $file, $arguments = $args
    $out = & $file @arguments 2>&1
    if ($LASTEXITCODE -ne 0) { throw "'$file $($arguments -join ' ')' failed ($LASTEXITCODE): $($out -join ' ')" }
    $out | ForEach-Object { "$_" }
}

function Get-TestHostNamespacePids([string] $Namespace) {
    if (-not (& ip netns list | Where-Object { ($_ -split ' ')[0] -eq $Namespace })) { return @() }
    @(& ip netns pids $Namespace 2>$null | Where-Object { $_ -match '^\d+$' } | ForEach-Object { [int]$_ })
}

function Test-TestHostProcessRunning([int] $ProcessId) {
    # A killed process whose parent is gone waits as a zombie for init to reap it (some container
    # inits never do); a zombie runs nothing, so it counts as stopped.
    $stat = Get-Content "/proc/$ProcessId/stat" -Raw -ErrorAction Ignore
    [bool]$stat -and $stat -notmatch '^\d+ \(.*\) Z '
}

function Use-TestHostLock([scriptblock] $Script) {
    # Other engineers' tests create hosts concurrently: the subnet check and its use happen under one
    # exclusive lock (flock via FileShare.None), so two hosts never pick the same /30.
    $deadline = [DateTime]::UtcNow.AddSeconds(30)
    while ($true) {
        try { $lock = [IO.File]::Open($TestHostLock, 'OpenOrCreate', 'ReadWrite', 'None'); break }
        catch [IO.IOException] {
            if ([DateTime]::UtcNow -gt $deadline) { throw "Timed out waiting for $TestHostLock" }
            Start-Sleep -Milliseconds 50
        }
    }
    try { & $Script } finally { $lock.Dispose() }
}

function ConvertTo-TestHostBitRate([string] $Rate) {
    if ($Rate -notmatch '^(\d+)(k|m|g)?bit$') { throw "LinkRate '$Rate' is not a tc rate such as 100mbit or 1gbit." }
    [long]$Matches[1] * @{ '' = 1; k = 1e3; m = 1e6; g = 1e9 }[$Matches[2] + '']
}

function New-TestHost {
    <#
    .SYNOPSIS
        A network namespace with its own sshd (pwsh remoting subsystem), joined to the root namespace by a veth pair.
    .PARAMETER LinkRate
        Shapes both directions of the veth with tbf (e.g. 100mbit, 1gbit). Unshaped when omitted.
    #>
    param(
        [Parameter(Mandatory)] [ValidatePattern('^[a-z0-9]{1,12}$')] [string] $Name,
        [string] $LinkRate,
        # tbf burst; must hold at least one packet. Defaults follow the measured ones in qemu-traps.md.
        [string] $Burst,
        # Gives the host its own UTS namespace with this hostname (default: the machine's).
        [string] $HostName,
        # Gives the host its own mount namespace with these bind mounts: path seen inside = folder
        # relative to the host's Folder (made 0700 there), e.g. @{ '/etc/libvirt' = 'libvirt/etc' }.
        # Every process sshd starts sees them; in the root namespace the folders stay where they are.
        [Collections.IDictionary] $PrivateMounts
    )
    if ((& id -u) -ne '0') { throw 'New-TestHost needs root (network namespaces, sshd).' }
    if (-not (Test-Path /usr/sbin/sshd)) { throw 'sshd is missing: run ./build.ps1 deps (installs openssh-server).' }
    if (-not (Test-Path $TestHostPwsh)) { throw "No pwsh executable beside this pwsh.dll: $TestHostPwsh" }

    $id = [guid]::NewGuid().ToString('n').Substring(0, 8)
    $folder = Join-Path ([IO.Path]::GetTempPath()) "dm-host-$Name-$id"
    $h = [pscustomobject]@{
        Name = $Name; Namespace = "dm-$Name-$id"; Address = $null; PeerAddress = $null; Port = 22; UserName = 'root'
        KeyFilePath = Join-Path $folder 'id_ed25519'; KnownHostsFile = Join-Path $folder 'known_hosts'
        Folder = $folder; RunDirectory = Join-Path $folder 'run'; SshdLog = Join-Path $folder 'sshd.log'
        RootVeth = "dm${id}r"; NamespaceVeth = "dm${id}n"; LinkRate = $LinkRate
        HostName = $HostName; PrivateMounts = [ordered]@{}
        Process = $null; Pid = 0; Sessions = [Collections.Generic.List[object]]::new()
    }
    try {
        # 0700: private keys live here, and the module refuses a run directory others can reach.
        $mode = [IO.UnixFileMode]'UserRead, UserWrite, UserExecute'
        $null = [IO.Directory]::CreateDirectory($folder, $mode)
        $null = [IO.Directory]::CreateDirectory($h.RunDirectory, $mode)
        if ($PrivateMounts) {
            foreach ($target in $PrivateMounts.Keys) {
                $source = Join-Path $folder $PrivateMounts[$target]
                $null = [IO.Directory]::CreateDirectory($source, $mode)
                # The mount point, if missing: empty and 0700 (/run/deltamigrate is the module's run
                # directory as root, which it refuses when others can reach it).
                if (-not (Test-Path $target)) { $null = [IO.Directory]::CreateDirectory($target, $mode) }
                $h.PrivateMounts[$target] = $source
            }
        }

        Use-TestHostLock {
            $used = (@(& ip -4 -o addr show) + @(& ip -4 route show)) -join "`n"   # addresses and routes in our namespace
            $free = 0..255 | Where-Object { $used -notmatch "\b10\.231\.$_\.\d+/" } | Get-Random
            if ($null -eq $free) { throw 'No free 10.231.<n>.0/30 subnet for a test host.' }
            $h.PeerAddress = "10.231.$free.1"; $h.Address = "10.231.$free.2"
            Invoke-TestHostNative ip netns add $h.Namespace | Out-Null
            Invoke-TestHostNative ip link add $h.RootVeth type veth peer name $h.NamespaceVeth netns $h.Namespace | Out-Null
            Invoke-TestHostNative ip addr add "$($h.PeerAddress)/30" dev $h.RootVeth | Out-Null
        }
        Invoke-TestHostNative ip link set $h.RootVeth up | Out-Null
        Invoke-TestHostNative ip -n $h.Namespace addr add "$($h.Address)/30" dev $h.NamespaceVeth | Out-Null
        Invoke-TestHostNative ip -n $h.Namespace link set $h.NamespaceVeth up | Out-Null
        Invoke-TestHostNative ip -n $h.Namespace link set lo up | Out-Null

        if ($LinkRate) {
            # veth keeps MTU 1500, so a burst of a few hundred KB holds many packets (the lo trap is a 64 KiB MTU).
            if (-not $Burst) { $Burst = if ((ConvertTo-TestHostBitRate $LinkRate) -ge 1e9) { '1mb' } else { '256kb' } }
            $tbf = 'root', 'tbf', 'rate', $LinkRate, 'burst', $Burst, 'latency', '50ms'
            Invoke-TestHostNative tc qdisc add dev $h.RootVeth @tbf | Out-Null
            Invoke-TestHostNative ip netns exec $h.Namespace tc qdisc add dev $h.NamespaceVeth @tbf | Out-Null
        }

        $hostKey = Join-Path $folder 'ssh_host_ed25519_key'
        Invoke-TestHostNative ssh-keygen -q -t ed25519 -N '' -C "dm-testhost-$Name" -f $hostKey | Out-Null
        Invoke-TestHostNative ssh-keygen -q -t ed25519 -N '' -C "dm-testclient-$Name" -f $h.KeyFilePath | Out-Null
        Copy-Item "$($h.KeyFilePath).pub" (Join-Path $folder 'authorized_keys')
        # Pins this host's key, so the client checks it strictly without reading or writing ~/.ssh.
        "$($h.Address) $(Get-Content "$hostKey.pub")" | Set-Content $h.KnownHostsFile

        $config = Join-Path $folder 'sshd_config'
        @"
ListenAddress $($h.Address)
Port $($h.Port)
HostKey $hostKey
PidFile $(Join-Path $folder 'sshd.pid')
AuthorizedKeysFile $(Join-Path $folder 'authorized_keys')
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers root
UsePAM no
# The folder's parent is /tmp (mode 1777), which StrictModes rejects on the way to authorized_keys.
StrictModes no
PrintMotd no
X11Forwarding no
LogLevel VERBOSE
SetEnv DELTAMIGRATE_RUNDIR=$($h.RunDirectory)$(if ($env:DELTAMIGRATE_TEST_MODULE) { " PSModulePath=$env:PSModulePath DELTAMIGRATE_TEST_MODULE=$env:DELTAMIGRATE_TEST_MODULE" })
Subsystem powershell $TestHostPwsh -sshs -NoLogo -NoProfile
"@ | Set-Content $config
        # sshd's privilege separation directory, normally made by its service (which never runs here).
        $null = [IO.Directory]::CreateDirectory('/run/sshd')
        Invoke-TestHostNative /usr/sbin/sshd -t -f $config | Out-Null

        # 'ip netns exec' execs sshd in place, so this process is sshd itself; -D keeps it in the
        # foreground (our child, stopped by pid), -E sends its log to the folder.
        $sshd = '/usr/sbin/sshd', '-D', '-f', $config, '-E', $h.SshdLog
        if ($HostName -or $PrivateMounts) {
            # 'ip netns exec' gives each exec a mount namespace of its own, so private mounts must live
            # in one long-lived process: unshare (no fork) execs sh, which mounts, names the host and
            # execs sshd, so sshd keeps the pid and everything it starts inherits the namespaces.
            # Its errors go to the sshd log, which the failure message shows.
            $prelude = 'set -e; exec 2>>"$1"; shift; [ -z "$1" ] || hostname "$1"; shift; while [ "$1" != -- ]; do mount --bind "$1" "$2"; shift 2; done; shift; exec "$@"'
            $mounts = foreach ($target in $h.PrivateMounts.Keys) { $h.PrivateMounts[$target]; $target }
            $sshd = @('unshare', '--mount', '--uts', '--propagation', 'private', 'sh', '-c', $prelude, 'sh', $h.SshdLog, "$HostName") + @($mounts) + '--' + $sshd
        }
        $h.Process = Start-TestHostProcess (@('ip', 'netns', 'exec', $h.Namespace) + $sshd)
        $h.Pid = $h.Process.Id

        Wait-TestHostPort $h
        $h
    }
    catch {
        $err = $_
        $log = if (Test-Path $h.SshdLog) { " sshd log: $((Get-Content $h.SshdLog) -join ' | ')" }
        Remove-TestHost $h
        throw "New-TestHost '$Name' ($($h.Namespace)) failed: $err$log"
    }
}

function Start-TestHostProcess([string[]] $Command) {
    # A daemon in the foreground as our child (stopped by its pid), stdin closed, its output drained so
    # it never blocks; what it wrote to stderr is in the StandardErrorText task once it has exited.
    $file, $arguments = $Command
    $psi = [Diagnostics.ProcessStartInfo]::new($file)
    foreach ($a in $arguments) { $psi.ArgumentList.Add($a) }
    $psi.UseShellExecute = $false
    $psi.RedirectStandardInput = $true; $psi.RedirectStandardOutput = $true; $psi.RedirectStandardError = $true
    $p = [Diagnostics.Process]::Start($psi)
    $p.StandardInput.Close()
    $null = $p.StandardOutput.ReadToEndAsync()
    $p | Add-Member -NotePropertyName StandardErrorText -NotePropertyValue $p.StandardError.ReadToEndAsync() -PassThru
}

function Wait-TestHostPort($TestHost, [int] $TimeoutSeconds = 15) {
    # Ready means sshd answers with its banner over the veth, i.e. the route works too.
    $deadline = [DateTime]::UtcNow.AddSeconds($TimeoutSeconds)
    while ($true) {
        if ($TestHost.Process.HasExited) { throw "sshd exited with code $($TestHost.Process.ExitCode)." }
        $client = [Net.Sockets.TcpClient]::new()
        try {
            if ($client.ConnectAsync($TestHost.Address, $TestHost.Port).Wait(1000)) {
                $stream = $client.GetStream(); $stream.ReadTimeout = 2000
                $banner = [IO.StreamReader]::new($stream).ReadLine()
                if ($banner -like 'SSH-2.0-*') { return }
            }
        }
        catch { }   # refused: not listening yet
        finally { $client.Dispose() }
        if ([DateTime]::UtcNow -gt $deadline) { throw "Timed out after $TimeoutSeconds s waiting for sshd on $($TestHost.Address):$($TestHost.Port)." }
        Start-Sleep -Milliseconds 50
    }
}

function New-TestHostSession {
    # A PSSession over SSH to the test host, as root with its client key; remembered for Remove-TestHost.
    param(
        [Parameter(Mandatory)] $TestHost,
        # Another run directory for this session only (default: the host's, set by its sshd).
        [string] $RunDirectory
    )
    $options = @{
        UserKnownHostsFile = $TestHost.KnownHostsFile; GlobalKnownHostsFile = '/dev/null'; StrictHostKeyChecking = 'yes'
        IdentitiesOnly = 'yes'; BatchMode = 'yes'; ConnectTimeout = '10'   # never prompt, never try an agent's keys
    }
    $s = New-PSSession -HostName $TestHost.Address -Port $TestHost.Port -UserName $TestHost.UserName `
        -KeyFilePath $TestHost.KeyFilePath -SSHTransport -Options $options -Name "$($TestHost.Namespace)-$($TestHost.Sessions.Count)" -ErrorAction Stop
    $TestHost.Sessions.Add($s)
    if ($RunDirectory) {
        $null = [IO.Directory]::CreateDirectory($RunDirectory, [IO.UnixFileMode]'UserRead, UserWrite, UserExecute')
        Invoke-Command -Session $s { $env:DELTAMIGRATE_RUNDIR = $using:RunDirectory }
    }
    $s
}

function Connect-TestHost {
    <#
    .SYNOPSIS
        Joins two test hosts directly (a veth pair between their namespaces), so each reaches the
        other's Address, as hosts of one fleet do; the root namespace forwards nothing.
    .DESCRIPTION
        The link has its own /30 (10.232.<n>.0, which exists only inside the two namespaces), and each
        namespace gets a /32 route to the other's Address over it. It goes with the namespaces.
    #>
    param([Parameter(Mandatory)] $From, [Parameter(Mandatory)] $To)
    $used = (@(& ip -n $From.Namespace -4 -o addr show) + @(& ip -n $To.Namespace -4 -o addr show)) -join "`n"
    $free = 0..255 | Where-Object { $used -notmatch "\b10\.232\.$_\.\d+/" } | Get-Random
    $a = "10.232.$free.1"; $b = "10.232.$free.2"
    $id = [guid]::NewGuid().ToString('n').Substring(0, 8)
    $va = "dm${id}a"; $vb = "dm${id}b"
    Invoke-TestHostNative ip -n $From.Namespace link add $va type veth peer name $vb netns $To.Namespace | Out-Null
    Invoke-TestHostNative ip -n $From.Namespace addr add "$a/30" dev $va | Out-Null
    Invoke-TestHostNative ip -n $To.Namespace addr add "$b/30" dev $vb | Out-Null
    Invoke-TestHostNative ip -n $From.Namespace link set $va up | Out-Null
    Invoke-TestHostNative ip -n $To.Namespace link set $vb up | Out-Null
    Invoke-TestHostNative ip -n $From.Namespace route add "$($To.Address)/32" via $b dev $va | Out-Null
    Invoke-TestHostNative ip -n $To.Namespace route add "$($From.Address)/32" via $a dev $vb | Out-Null
}

function Remove-TestHost {
    # Closes the host's sessions, stops sshd and everything still running in the namespace (remote
    # pwsh, QEMU), deletes the veth pair, the namespace and the folder. Safe to call twice.
    param([Parameter(Mandatory, ValueFromPipeline)] $TestHost)
    process {
        foreach ($s in $TestHost.Sessions) { Remove-PSSession $s -ErrorAction Ignore }
        $TestHost.Sessions.Clear()

        if ($TestHost.Process -and -not $TestHost.Process.HasExited) {
            $TestHost.Process.Kill()   # SIGKILL to sshd's own pid
            if (-not $TestHost.Process.WaitForExit(10000)) { throw "sshd $($TestHost.Pid) of '$($TestHost.Name)' did not exit." }
        }
        # Whatever sshd started lives on in the namespace (reparented); every pid in it is ours.
        $deadline = [DateTime]::UtcNow.AddSeconds(10)
        while ($pids = Get-TestHostNamespacePids $TestHost.Namespace) {
            if ([DateTime]::UtcNow -gt $deadline) { throw "Processes $($pids -join ', ') in '$($TestHost.Namespace)' did not exit." }
            foreach ($p in $pids) { & kill -KILL $p 2>$null }
            Start-Sleep -Milliseconds 50
        }

        # Deleting one end deletes both; done before the namespace, whose own teardown is asynchronous.
        if (& ip link show $TestHost.RootVeth 2>$null) { Invoke-TestHostNative ip link del $TestHost.RootVeth | Out-Null }
        if (& ip netns list | Where-Object { ($_ -split ' ')[0] -eq $TestHost.Namespace }) {
            Invoke-TestHostNative ip netns del $TestHost.Namespace | Out-Null
        }
        Remove-Item -Recurse -Force $TestHost.Folder -ErrorAction Ignore
    }
}
