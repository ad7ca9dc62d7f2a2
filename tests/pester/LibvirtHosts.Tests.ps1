# The libvirt test topology (LibvirtHosts.ps1): two libvirt hosts on this machine that libvirt takes
# for two machines, a test-guest domain on one, libvirt's own live migration to the other over the
# link between them, and nothing left after Remove-LibvirtTestHost. Needs root and libvirt.
BeforeAll {
    . "$PSScriptRoot/TestHelpers.ps1"
    . "$PSScriptRoot/TestHosts.ps1"
    . "$PSScriptRoot/LibvirtHosts.ps1"
    $script:H1 = New-LibvirtTestHost -Name h1 -LinkRate 1gbit
    $script:H2 = New-LibvirtTestHost -Name h2 -LinkRate 1gbit
    Connect-TestHost -From $H1 -To $H2

    function Get-DomainQemuPid($TestHost, [string] $Name) {
        # libvirt's pid file for the domain, in the host's private /run/libvirt.
        [int](Get-Content (Join-Path $TestHost.LibvirtRoot "run/qemu/$Name.pid") -ErrorAction Stop)
    }
    function Get-LinkTxBytes($TestHost) {
        # Bytes sent on the host's end of the Connect-TestHost link (its dm<id>a veth).
        $links = & ip -n $TestHost.Namespace -j -s link show | ConvertFrom-Json
        ($links | Where-Object ifname -Match '^dm[0-9a-f]{8}a$').stats64.tx.bytes
    }
}

AfterAll {
    foreach ($h in $H1, $H2) { if ($h) { Remove-LibvirtTestHost $h } }
}

Describe 'Two libvirt test hosts' {
    It 'run a libvirtd each, in the host''s namespaces, with its own hostname and host UUID' {
        foreach ($h in $H1, $H2) {
            Test-TestHostProcessRunning $h.LibvirtdPid | Should -BeTrue
            (& ip netns identify $h.LibvirtdPid) | Should -Be $h.Namespace
            (Invoke-LibvirtTestVirsh $h hostname) | Should -Be $h.HostName
            ([xml]((Invoke-LibvirtTestVirsh $h capabilities) -join "`n")).capabilities.host.uuid | Should -Be $h.HostUuid
            Test-Path (Join-Path $h.LibvirtRoot 'run/libvirt-sock') | Should -BeTrue
        }
        $H1.HostName | Should -Not -Be $H2.HostName
        $H1.HostName | Should -Not -Be (hostname) -Because 'the machine keeps its own name'
        $H1.HostUuid | Should -Not -Be $H2.HostUuid
    }

    It 'offer QEMU 7.2 with machine pc-i440fx-7.2 as the emulator' {
        foreach ($h in $H1, $H2) {
            $caps = [xml]((Invoke-LibvirtTestVirsh $h capabilities) -join "`n")
            $x86 = $caps.capabilities.guest | Where-Object { $_.arch.name -eq 'x86_64' -and $_.os_type -eq 'hvm' }
            $x86.arch.emulator | Should -Be '/usr/bin/qemu-system-x86_64'
            @($x86.arch.machine | ForEach-Object { if ($_ -is [string]) { $_ } else { $_.'#text' } }) | Should -Contain 'pc-i440fx-7.2'
            (Invoke-LibvirtTestVirsh $h version) -join "`n" | Should -Match 'hypervisor: QEMU 7\.2\.'
        }
    }

    It 'show a session the host''s private libvirt and socket folders, and a ConnectionUri that works inside too' {
        $s = New-TestHostSession -TestHost $H1
        $marker = "probe-$([guid]::NewGuid().ToString('n'))"
        $r = Invoke-Command -Session $s {
            $null = New-Item -ItemType File (Join-Path $using:H1.SocketDirectory $using:marker)
            [pscustomobject]@{
                Host = hostname
                DefaultSocket = (virsh -c qemu:///system hostname) -join ''
                Uri = (virsh -c $using:H1.ConnectionUri hostname) -join ''
                Sockets = @(Get-ChildItem $using:H1.SocketDirectory -Name)
            }
        }
        $r.Host | Should -Be $H1.HostName
        $r.DefaultSocket | Should -Be $H1.HostName -Because 'qemu:///system inside the host reaches its own libvirtd'
        $r.Uri | Should -Be $H1.HostName
        $r.Sockets | Should -Be @($marker)
        Test-Path (Join-Path $H1.Folder "sockets/$marker") | Should -BeTrue
        Test-Path (Join-Path $H2.Folder "sockets/$marker") | Should -BeFalse -Because 'each host has its own folder at that path'
        Test-Path (Join-Path $H1.SocketDirectory $marker) | Should -BeFalse -Because 'the root namespace does not see it'
    }

    It 'answer qemu+ssh (SshConnectionUri) from the root namespace and from inside the other host' {
        ((& virsh -c $H2.SshConnectionUri hostname 2>&1) -join ' ').Trim() | Should -Be $H2.HostName
        $s = New-TestHostSession -TestHost $H1
        Invoke-Command -Session $s { ((virsh -c $using:H2.SshConnectionUri hostname 2>&1) -join ' ').Trim() } | Should -Be $H2.HostName -Because 'h1 reaches h2 over their link'
    }

    It 'run the test guest in a domain on h1, its QEMU inside h1, heartbeats advancing' {
        $script:Domain = New-LibvirtTestDomain -TestHost $H1 -Name vm1
        (Invoke-LibvirtTestVirsh $H1 domstate vm1) | Should -Be 'running'
        $qemu = Get-DomainQemuPid $H1 vm1
        (& ip netns identify $qemu) | Should -Be $H1.Namespace
        (Get-Content "/proc/$qemu/cmdline" -Raw) -split "`0" | Should -Contain '/usr/bin/qemu-system-x86_64'
        $hb = Get-Heartbeat $Domain.SerialLog
        Wait-Until { (Get-Heartbeat $Domain.SerialLog) -gt $hb } 'heartbeats on h1'
    }

    It 'live-migrates the domain to h2 with libvirt over the h1-h2 link (plain TCP): h2 runs it, h1 no longer' {
        $script:SourceQemuPid = Get-DomainQemuPid $H1 vm1
        $sentBefore = Get-LinkTxBytes $H1
        Invoke-LibvirtTestVirsh $H1 migrate --live vm1 $H2.ConnectionUri --migrateuri "tcp://$($H2.Address):49152" | Out-Null
        (Invoke-LibvirtTestVirsh $H2 domstate vm1) | Should -Be 'running'
        @(Invoke-LibvirtTestVirsh $H1 list --all --name | Where-Object { $_ }) | Should -Not -Contain 'vm1' -Because 'a transient domain leaves the source with its QEMU'
        Test-TestHostProcessRunning $SourceQemuPid | Should -BeFalse
        (& ip netns identify (Get-DomainQemuPid $H2 vm1)) | Should -Be $H2.Namespace
        # The guest's 32 MiB of random (incompressible) working set crossed this link, not another path.
        ((Get-LinkTxBytes $H1) - $sentBefore) | Should -BeGreaterThan 30MB
    }

    It 'keeps the guest running on h2: heartbeats continue in h2''s own serial log' {
        $lastOnSource = Get-Heartbeat $Domain.SerialLog
        $destinationLog = Get-LibvirtTestSerialLog -TestHost $H2 -Name vm1
        $destinationLog | Should -Not -Be $Domain.SerialLog
        Wait-Until { (Get-Heartbeat $destinationLog) -gt $lastOnSource + 5 } 'heartbeats on h2 beyond the last one on h1'
        Get-Heartbeat $Domain.SerialLog | Should -Be $lastOnSource -Because 'the source QEMU is gone'
    }

    It 'restarts a stopped libvirtd, which finds its running domain again' {
        $qemu = Get-DomainQemuPid $H2 vm1
        Stop-LibvirtTestDaemon $H2
        { Invoke-LibvirtTestVirsh $H2 list } | Should -Throw '*libvirt-sock*'
        Test-TestHostProcessRunning $qemu | Should -BeTrue -Because 'a domain outlives its libvirtd, as on a real host'
        Start-LibvirtTestDaemon $H2
        (Invoke-LibvirtTestVirsh $H2 domstate vm1) | Should -Be 'running'
    }

    It 'Remove-LibvirtTestHost leaves no libvirtd, QEMU, sshd, namespace or folder, and may be called again' {
        $pids = @($H1.LibvirtdPid, $H2.LibvirtdPid, $H1.Pid, $H2.Pid, (Get-DomainQemuPid $H2 vm1))
        foreach ($h in $H1, $H2) { Remove-LibvirtTestHost $h }
        foreach ($p in $pids) { Test-TestHostProcessRunning $p | Should -BeFalse -Because "process $p was the test's" }
        $namespaces = & ip netns list | ForEach-Object { ($_ -split ' ')[0] }
        foreach ($h in $H1, $H2) {
            $namespaces | Should -Not -Contain $h.Namespace
            & ip link show $h.RootVeth 2>$null | Should -BeNullOrEmpty
            Test-Path $h.Folder | Should -BeFalse
            { Remove-LibvirtTestHost $h } | Should -Not -Throw
        }
        $strays = Get-ChildItem /proc -Directory -Name | Where-Object { $_ -match '^\d+$' } | ForEach-Object {
            $cmd = Get-Content "/proc/$_/cmdline" -Raw -ErrorAction Ignore
            if ($cmd -and ($cmd -match [regex]::Escape($H1.Folder) -or $cmd -match [regex]::Escape($H2.Folder))) { $_ }
        }
        $strays | Should -BeNullOrEmpty -Because 'no process of the test names its hosts'' folders'
    }
}
