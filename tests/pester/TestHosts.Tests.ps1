# The test topology for remoting (TestHosts.ps1): a host comes up in its own namespace, a PSSession
# over SSH reaches it, the module runs there with the host's run directory, and nothing survives
# Remove-TestHost. Needs root.
BeforeAll {
    . "$PSScriptRoot/TestHelpers.ps1"
    Import-Module $ModuleUnderTest -Force
    . "$PSScriptRoot/TestHosts.ps1"
    $script:LocalRunDir = Initialize-TestRunDirectory
    $script:H = New-TestHost -Name h2 -LinkRate 1gbit
    $script:S = New-TestHostSession -TestHost $H
}

AfterAll {
    if ($H) { Remove-TestHost $H }
    Remove-TestRunDirectory $LocalRunDir
}

Describe 'A test host' {
    It 'runs sshd inside its own namespace, listening on the namespace address' {
        (& ip netns list | ForEach-Object { ($_ -split ' ')[0] }) | Should -Contain $H.Namespace
        $H.Namespace | Should -Match '^dm-h2-[0-9a-f]{8}$'
        $H.Process.HasExited | Should -BeFalse
        Test-TestHostProcessRunning $H.Pid | Should -BeTrue
        (& ip netns identify $H.Pid) | Should -Be $H.Namespace
        $H.Address | Should -Match '^10\.231\.\d+\.2$'
        (& ip netns exec $H.Namespace ss -Htln) -join "`n" | Should -Match ([regex]::Escape("$($H.Address):22"))
        (Get-Item $H.Folder).UnixFileMode | Should -Be ([IO.UnixFileMode]'UserRead, UserWrite, UserExecute')
    }

    It 'runs a PSSession''s commands inside the namespace' {
        $r = Invoke-Command -Session $S { [pscustomobject]@{ Host = hostname; Ns = ip netns identify; Addr = (ip -4 addr) -join "`n"; User = whoami } }
        $r.Host | Should -Be (hostname) -Because 'the namespace shares the machine, only the network is its own'
        $r.Ns | Should -Be $H.Namespace
        $r.Addr | Should -Match ([regex]::Escape("inet $($H.Address)/30"))
        $r.Addr | Should -Not -Match ([regex]::Escape("inet $($H.PeerAddress)/")) -Because 'our side of the veth is not in there'
        $r.User | Should -Be 'root'
    }

    It 'imports the module remotely and lists VMs from the host''s own run directory' {
        $r = Invoke-Command -Session $S {
            Import-Module $using:ModuleUnderTest
            [pscustomobject]@{ RunDir = $env:DELTAMIGRATE_RUNDIR; VMs = @(Get-KvmVM -ErrorAction Stop).Count }
        }
        $r.RunDir | Should -Be $H.RunDirectory
        $r.VMs | Should -Be 0
        $env:DELTAMIGRATE_RUNDIR | Should -Be $LocalRunDir -Because 'the test keeps its own'
    }

    It 'gives a second session its own run directory on request' {
        $dir = Join-Path $H.Folder 'run2'
        $s2 = New-TestHostSession -TestHost $H -RunDirectory $dir
        Invoke-Command -Session $s2 { $env:DELTAMIGRATE_RUNDIR } | Should -Be $dir
        $H.Sessions | Should -Contain $s2
    }

    It 'starts a VM inside the namespace that the test''s own run directory does not see' {
        $vm = Invoke-Command -Session $S {
            Start-KvmVM -Name remote1 -Memory 64MB -Kernel $using:Guest -Append 'ws=8' -Accelerator Tcg -Machine $using:Machine -Incoming -Paused
        }
        (& ip netns identify $vm.Pid) | Should -Be $H.Namespace
        Test-Path (Join-Path $H.RunDirectory 'remote1.qmp') | Should -BeTrue
        Get-KvmVM -Name 'remote1*' | Should -BeNullOrEmpty
        $script:RemoteQemuPid = $vm.Pid   # left running: Remove-TestHost must stop it
    }

    It 'shapes both ends of the link with tbf' {
        (& ip netns exec $H.Namespace tc qdisc show dev $H.NamespaceVeth) -join ' ' | Should -Match 'tbf .*rate 1Gbit'
        (& tc qdisc show dev $H.RootVeth) -join ' ' | Should -Match 'tbf .*rate 1Gbit'
    }

    It 'Remove-TestHost leaves nothing behind, and may be called again' {
        $RemoteQemuPid | Should -BeGreaterThan 0
        $sshd = $H.Pid
        $sessions = @($H.Sessions)
        Remove-TestHost $H
        Test-TestHostProcessRunning $sshd | Should -BeFalse -Because 'sshd is stopped'
        Test-TestHostProcessRunning $RemoteQemuPid | Should -BeFalse -Because 'QEMU started through the session is stopped'
        (& ip netns list | ForEach-Object { ($_ -split ' ')[0] }) | Should -Not -Contain $H.Namespace
        & ip link show $H.RootVeth 2>$null | Should -BeNullOrEmpty
        (& ip -4 -o addr show) -join "`n" | Should -Not -Match ([regex]::Escape("$($H.PeerAddress)/"))
        Test-Path $H.Folder | Should -BeFalse
        $sessions.State | Should -Not -Contain 'Opened'
        { Remove-TestHost $H } | Should -Not -Throw
    }
}

Describe 'New-TestHost' {
    It 'cleans up after itself when the setup fails' {
        # A burst tc rejects fails the setup after the namespace, the veth and the folder exist.
        $err = { New-TestHost -Name bad -LinkRate 1gbit -Burst nonsense } | Should -Throw '*New-TestHost*' -PassThru
        $m = [regex]::Match($err.Exception.Message, '\((dm-bad-([0-9a-f]{8}))\)')
        $m.Success | Should -BeTrue -Because 'the error names the namespace'
        $ns = $m.Groups[1].Value; $id = $m.Groups[2].Value
        (& ip netns list | ForEach-Object { ($_ -split ' ')[0] }) | Should -Not -Contain $ns
        & ip link show "dm${id}r" 2>$null | Should -BeNullOrEmpty
        Test-Path (Join-Path ([IO.Path]::GetTempPath()) "dm-host-bad-$id") | Should -BeFalse
    }
}
